"""lstrace.exporter on hand-built Snapshots: names, label sets, histogram seams."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lstrace import __version__, exporter
from lstrace.layout import FAILURE_REASONS, NSLOTS
from lstrace.snapshot import ProbeStatus, ProgramStats, Snapshot


def make_snap(**kw):
    base = dict(taken=1.0, cpus=[0, 1], kernel={"release": "6.18.0", "generation": "B"},
                probes=[ProbeStatus("task_storage_get", "helper", "fentry", True),
                        ProbeStatus("rqspinlock", "tracepoint", "tracepoint", True),
                        ProbeStatus("busy_sampler", "tracepoint", "unavailable", False, "no")])
    base.update(kw)
    return Snapshot(**base)


def slots_with(values_ns):
    s = [0] * NSLOTS
    for v in values_ns:
        s[exporter.value_slot(v)] += 1
    return s


def samples(snap, extra=None):
    """{(sample name, frozenset(labels)): value} of the text exposition."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(exporter.SnapshotCollector(lambda: snap))
    text = generate_latest(reg).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out, text


def get(smp, name, **labels):
    return smp[(name, frozenset(labels.items()))]


@pytest.mark.parametrize("s", [1, 2, 10, 20, 39])
def test_value_exactly_on_le_lands_in_that_bucket(s):
    """ebpf_exporter #488: a value of exactly 2^s ns must be counted in le=2^s ns."""
    v = 1 << s
    assert exporter.value_slot(v) == s
    assert exporter.value_slot(v + 1) == s + 1 or s == NSLOTS - 1
    assert exporter.value_slot(v // 2 + 1) == s
    buckets, _ = exporter.histogram_buckets(slots_with([v]))
    le_of = {le: n for le, n in buckets}
    assert le_of[exporter.le_text(s)] == 1
    if s > 0:
        assert le_of[exporter.le_text(s - 1)] == 0
    assert float(exporter.le_text(s)) == pytest.approx(v * 1e-9, rel=1e-12)


def test_slot0_holds_0_and_1ns():
    assert exporter.value_slot(0) == 0 and exporter.value_slot(1) == 0
    assert exporter.le_text(0) == "1e-09"


def test_buckets_cumulative_sorted_and_end_in_inf():
    vals = [1, 2, 3, 4, 5, 1000, 1024, 1025, 10**6]
    buckets, est = exporter.histogram_buckets(slots_with(vals))
    counts = [n for _, n in buckets]
    assert counts == sorted(counts)
    assert buckets[-1] == ("+Inf", len(vals))
    les = [float(le) for le, _ in buckets[:-1]]
    assert les == sorted(les) and len(les) == NSLOTS
    # le=4ns holds 1,2,3,4 ; le=1024ns adds 5,1000,1024
    assert dict(buckets)["4e-09"] == 4
    assert dict(buckets)["1.024e-06"] == 7
    # _sum estimate: within a factor 4/3 of the truth for every observation
    true = sum(vals) * 1e-9
    assert true * 0.74 <= est <= true * 1.34


def test_helper_metrics_and_label_sets():
    outcomes = {"ok": 90, "busy": 5, "deadlock": 1, "timeout": 2, "nomem": 0, "not_found": 2,
                "other": 0}
    snap = make_snap(helper={("task_storage_get", 1): outcomes},
                     latency={("task_storage_get", 1): slots_with([1024] * 3 + [3])})
    smp, _ = samples(snap)
    assert get(smp, "lstrace_helper_calls_total", probe="task_storage_get", cpu="1") == 100
    for r in FAILURE_REASONS:
        assert get(smp, "lstrace_helper_failures_total", probe="task_storage_get", cpu="1",
                   reason=r) == outcomes[r]
    assert get(smp, "lstrace_helper_latency_seconds_bucket", probe="task_storage_get",
               cpu="1", le="1.024e-06") == 4
    assert get(smp, "lstrace_helper_latency_seconds_bucket", probe="task_storage_get",
               cpu="1", le="5.12e-07") == 1
    assert get(smp, "lstrace_helper_latency_seconds_count", probe="task_storage_get",
               cpu="1") == 4
    labelsets = {(n, tuple(sorted(k for k, _ in ls))) for (n, ls) in smp}
    assert ("lstrace_helper_failures_total", ("cpu", "probe", "reason")) in labelsets


def test_rq_syscall_busy_probe_program_info():
    wait = [0] * NSLOTS
    wait[10] = 3
    snap = make_snap(
        rq_failures={(0, "EDEADLK", "AA", "local_storage"): 2,
                     (1, "ETIMEDOUT", "unknown", "htab"): 1},
        rq_wait={0: wait, 1: [0] * NSLOTS},
        syscall_errors={(1, "MAP_LOOKUP_ELEM", "hash", "ENOENT"): 7},
        busy_samples={0: (100, {"task": 3, "cgrp": 0})},
        guard_skips={0: 4, 1: 0},
        programs=[ProgramStats(10, "lst_contention_end", 50, 5000, 1),
                  ProgramStats(11, "lst_contention_end", 10, 1000, 0)])
    smp, text = samples(snap)
    assert get(smp, "lstrace_rqspinlock_failures_total", cpu="0", errno="EDEADLK", kind="AA",
               caller="local_storage") == 2
    assert get(smp, "lstrace_rqspinlock_wait_seconds_bucket", cpu="0", le="1.024e-06") == 3
    assert get(smp, "lstrace_rqspinlock_wait_seconds_bucket", cpu="0", le="5.12e-07") == 0
    assert get(smp, "lstrace_rqspinlock_wait_seconds_bucket", cpu="0", le="+Inf") == 3
    assert get(smp, "lstrace_bpf_syscall_errors_total", cpu="1", cmd="MAP_LOOKUP_ELEM",
               errno="ENOENT", map_type="hash") == 7
    assert get(smp, "lstrace_busy_samples_total", cpu="0") == 100
    assert get(smp, "lstrace_busy_held_samples_total", cpu="0", counter="task") == 3
    assert get(smp, "lstrace_guard_skips_total", cpu="0") == 4
    assert get(smp, "lstrace_probe_attached", probe="task_storage_get", mode="fentry") == 1
    assert get(smp, "lstrace_probe_attached", probe="busy_sampler", mode="unavailable") == 0
    # programs summed by name: ids never become labels
    assert get(smp, "lstrace_bpf_program_runs_total", program="lst_contention_end") == 60
    assert get(smp, "lstrace_bpf_program_run_seconds_total",
               program="lst_contention_end") == pytest.approx(6e-6)
    assert get(smp, "lstrace_bpf_program_recursion_misses_total",
               program="lst_contention_end") == 1
    assert get(smp, "lstrace_build_info", version=__version__) == 1
    assert get(smp, "lstrace_kernel_info", release="6.18.0", generation="B") == 1
    assert get(smp, "lstrace_scrape_duration_seconds") >= 0
    for forbidden in ("pid=", "comm=", "addr=", "id="):
        assert forbidden not in text.replace("_id", "")


def test_empty_snapshot_exposes_info_only():
    smp, _ = samples(make_snap())
    names = {n for n, _ in smp}
    assert "lstrace_build_info" in names and "lstrace_probe_attached" in names
    assert not any(n.startswith("lstrace_helper_calls") for n in names)


def test_exposition_passes_promtool(tmp_path):
    import shutil
    import subprocess
    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (apt-get install prometheus)")
    snap = make_snap(helper={("task_storage_get", 0): {"ok": 1}},
                     latency={("task_storage_get", 0): slots_with([5])},
                     rq_wait={0: slots_with([7, 9])},
                     syscall_errors={(0, "MAP_CREATE", "none", "EPERM"): 1})
    _, text = samples(snap)
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
