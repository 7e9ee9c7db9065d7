"""Smoke test of benchmarks/: the synthetic exporter piece and the tables run
(no timing is asserted: performance is measured by benchmarks/run, not tested)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import exporter_cost  # noqa: E402
import report  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def test_synthetic_scrape_is_well_formed():
    body = exporter_cost.scrape_text(exporter_cost.synthetic_snapshot(2)).decode()
    fams = {f.name for f in text_string_to_metric_families(body)}
    assert {"lstrace_helper_calls", "lstrace_rqspinlock_failures",
            "lstrace_bpf_syscall_errors", "lstrace_helper_latency_seconds"} <= fams


def test_synthetic_piece_and_tables():
    res = {"synthetic": exporter_cost.synthetic(cpu_counts=(2,), reps=2)}
    assert res["synthetic"][2]["series"] > 0
    assert "synthetic, 2 CPUs" in report.exporter_table(res)
    s = {"median": 2.0, "min": 1.0, "max": 3.0, "q1": 1.5, "q3": 2.5, "n": 3}
    helper = {"baseline_ns": s, "skipped": {}, "configs": {
        k: {"ns_per_call": s, "overhead_ns": s, "overhead_runs": [1.0, 2.0, 3.0],
            "calls_made": 3, "calls_seen": 3}
        for k in ("empty_fexit", "lstrace_fentry", "funccount")}}
    assert "lstrace, fentry mode" in report.helper_table(helper)
    assert "NOT met" in report.helper_verdict(helper)      # 1.0x funccount is not below it
    assert report.ratios_json(helper)["lstrace_vs_empty_fexit"] == 1.0
    assert report.ratios_json(helper)["latency_vs_empty_pair"] is None   # not measured


def test_image_table():
    s = {"median": 2.0, "q1": 1.9, "q3": 2.2}
    res = {"image": "x:latest", "size_bytes": 398e6, "base_root_seconds": 0, "build_seconds": 78,
           "du": {"llvm": 228e6, "headers": 35e6, "python": 34e6, "total": 385e6},
           "startup_container": s, "startup_host": s}
    table = report.image_table(res)
    assert "398 MB" in table and "228 MB" in table and "2.00 [1.90–2.20] s" in table
