"""lstrace.exporter on hand-built Snapshots: names, label sets, histogram seams,
the series budget, the zero series that make a first failure count, and the
fast writer (lstrace.exposition) against prometheus_client and promtool."""
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lstrace import __version__, attribution, exporter, exposition, family
from lstrace.layout import CALLERS, FAILURE_REASONS, NSLOTS, RQ_ERRNOS, RQ_KINDS, slot_of
from lstrace.snapshot import FailureEvent, ProbeStatus, ProgramStats, Snapshot
from lstrace.probes import bpf_syscall

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from exporter_cost import synthetic_formula, synthetic_snapshot  # noqa: E402


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
        s[slot_of(v)] += 1
    return s


def parse(text):
    """{(sample name, frozenset(labels)): value} and {family: type} of an exposition."""
    out, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out, types


def samples(snap, per_cpu_latency=False):
    """What `lstrace serve` answers over HTTP (the fast writer), parsed."""
    c = exporter.SnapshotCollector(lambda: snap, per_cpu_latency=per_cpu_latency)
    text = c.render().decode()
    return parse(text)[0], text


def client_text(snap, per_cpu_latency=False):
    """prometheus_client's generate_latest of the same collector (textfile, --once)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(exporter.SnapshotCollector(lambda: snap, per_cpu_latency=per_cpu_latency))
    return generate_latest(reg).decode()


def get(smp, name, **labels):
    return smp[(name, frozenset(labels.items()))]


@pytest.mark.parametrize("s", [1, 2, 10, 20, 39])
def test_value_exactly_on_le_lands_in_that_bucket(s):
    """ebpf_exporter #488: a value of exactly 2^s ns must be counted in le=2^s ns."""
    v = 1 << s
    assert slot_of(v) == s
    assert slot_of(v + 1) == s + 1 or s == NSLOTS - 1
    assert slot_of(v // 2 + 1) == s
    buckets, _ = family.histogram_buckets(slots_with([v]))
    le_of = {le: n for le, n in buckets}
    assert le_of[family.le_text(s)] == 1
    if s > 0:
        assert le_of[family.le_text(s - 1)] == 0
    assert float(family.le_text(s)) == pytest.approx(v * 1e-9, rel=1e-12)


def test_slot0_holds_0_and_1ns():
    assert slot_of(0) == 0 and slot_of(1) == 0
    assert family.le_text(0) == "1e-09"


def test_buckets_cumulative_sorted_and_end_in_inf():
    vals = [1, 2, 3, 4, 5, 1000, 1024, 1025, 10**6]
    buckets, est = family.histogram_buckets(slots_with(vals))
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
                "unsupported": 0, "other": 0}
    snap = make_snap(helper={("task_storage_get", 1): outcomes,
                             ("task_storage_get", 0): {"ok": 3, "busy": 1}},
                     latency={("task_storage_get", 1): slots_with([1024] * 3 + [3]),
                              ("task_storage_get", 0): slots_with([1024])})
    smp, _ = samples(snap)
    assert get(smp, "lstrace_helper_calls_total", probe="task_storage_get", cpu="1") == 100
    assert get(smp, "lstrace_helper_calls_total", probe="task_storage_get", cpu="0") == 4
    for r in FAILURE_REASONS:       # per probe, summed over CPUs
        assert get(smp, "lstrace_helper_failures_total", probe="task_storage_get",
                   reason=r) == outcomes[r] + (r == "busy")
    # per CPU: the CPU-local reasons (gen B: busy possible; deadlock/timeout because seen)
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="1", reason="busy") == 5
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="1", reason="deadlock") == 1
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="0", reason="busy") == 1
    assert ("lstrace_helper_cpu_failures_total",
            frozenset({"cpu": "0", "reason": "deadlock"}.items())) not in smp
    # latency per probe by default: both CPUs in one histogram
    assert get(smp, "lstrace_helper_latency_seconds_bucket", probe="task_storage_get",
               le="1.024e-06") == 5
    assert get(smp, "lstrace_helper_latency_seconds_bucket", probe="task_storage_get",
               le="5.12e-07") == 1
    assert get(smp, "lstrace_helper_latency_seconds_count", probe="task_storage_get") == 5
    labelsets = {(n, tuple(sorted(k for k, _ in ls))) for (n, ls) in smp}
    assert ("lstrace_helper_failures_total", ("probe", "reason")) in labelsets
    assert not any(n.startswith("lstrace_helper_latency") and "cpu" in ks for n, ks in labelsets)
    # --per-cpu-latency: one histogram per probe and CPU
    smp, _ = samples(snap, per_cpu_latency=True)
    assert get(smp, "lstrace_helper_latency_seconds_count", probe="task_storage_get",
               cpu="1") == 4
    assert get(smp, "lstrace_helper_latency_seconds_bucket", probe="task_storage_get",
               cpu="0", le="1.024e-06") == 1


def test_inner_probes_not_double_counted_per_cpu():
    """A gen C get that fails in its nested bpf_local_storage_update is one failure
    on the CPU, though both probes count it."""
    snap = make_snap(kernel={"release": "7.3", "generation": "C"},
                     helper={("task_storage_get", 0): {"ok": 5, "deadlock": 1},
                             ("local_storage_update", 0): {"ok": 2, "deadlock": 1}})
    smp, _ = samples(snap)
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="0", reason="deadlock") == 1
    assert get(smp, "lstrace_helper_failures_total", probe="local_storage_update",
               reason="deadlock") == 1
    only_inner = make_snap(helper={("local_storage_update", 0): {"ok": 2, "deadlock": 3}})
    smp, _ = samples(only_inner)
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="0", reason="deadlock") == 3


@pytest.mark.parametrize("gen, reasons", [("A", {"busy"}), ("B", {"busy"}),
                                          ("C", {"deadlock", "timeout"}),
                                          ("", {"busy", "deadlock", "timeout"})])
def test_first_failure_series_exist_at_zero(gen, reasons):
    """rate()/increase() cannot see a series' first sample: every counter an
    alert reads is there with 0 from the first scrape, for what this kernel can
    produce."""
    zero = {o: 0 for o in ("ok",) + FAILURE_REASONS}
    snap = make_snap(kernel={"release": "x", "generation": gen},
                     probes=[ProbeStatus("task_storage_get", "helper", "fentry", True),
                             ProbeStatus("rqspinlock", "tracepoint", "tracepoint", True),
                             ProbeStatus("bpf_syscall", "tracepoint", "tracepoint", True)],
                     helper={("task_storage_get", c): dict(zero) for c in (0, 1)},
                     rq_wait={0: [0] * NSLOTS, 1: [0] * NSLOTS})
    smp, _ = samples(snap)
    for cpu in ("0", "1"):
        got = {dict(ls)["reason"] for n, ls in smp
               if n == "lstrace_helper_cpu_failures_total" and dict(ls)["cpu"] == cpu}
        assert got == reasons
        for err in RQ_ERRNOS:
            assert get(smp, "lstrace_rqspinlock_cpu_failures_total", cpu=cpu, errno=err) == 0
    for r in FAILURE_REASONS:
        assert get(smp, "lstrace_helper_failures_total", probe="task_storage_get", reason=r) == 0
    cube = [n for n, _ in smp if n == "lstrace_rqspinlock_failures_total"]
    assert len(cube) == len(RQ_ERRNOS) * len(RQ_KINDS) * len(CALLERS)
    for err in bpf_syscall.SYS_LOCK_ERRNOS:
        assert get(smp, "lstrace_bpf_syscall_errors_total", cmd="MAP_UPDATE_ELEM", errno=err,
                   map_type="task_storage") == 0


def test_rqspinlock_keys_outside_the_cube_still_exported():
    """The fast fold reads the known cube; anything else takes the slow path."""
    snap = make_snap(rq_failures={(0, "EDEADLK", "AA", "local_storage"): 2,
                                  (1, "EDEADLK", "AA", "newcaller"): 3,
                                  (7, "ETIMEDOUT", "unknown", "htab"): 1},
                     rq_wait={0: [0] * NSLOTS, 1: [0] * NSLOTS})
    smp, _ = samples(snap)
    assert get(smp, "lstrace_rqspinlock_failures_total", errno="EDEADLK", kind="AA",
               caller="newcaller") == 3
    assert get(smp, "lstrace_rqspinlock_cpu_failures_total", cpu="1", errno="EDEADLK") == 3
    assert get(smp, "lstrace_rqspinlock_cpu_failures_total", cpu="7", errno="ETIMEDOUT") == 1
    assert get(smp, "lstrace_rqspinlock_failures_total", errno="EDEADLK", kind="AA",
               caller="local_storage") == 2


def test_not_attached_exports_no_zero_series():
    smp, _ = samples(make_snap(probes=[ProbeStatus("rqspinlock", "tracepoint", "unavailable",
                                                   False, "no")]))
    names = {n for n, _ in smp}
    assert not names & {"lstrace_rqspinlock_failures_total", "lstrace_bpf_syscall_errors_total",
                        "lstrace_rqspinlock_cpu_failures_total"}


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
    assert get(smp, "lstrace_rqspinlock_failures_total", errno="EDEADLK", kind="AA",
               caller="local_storage") == 2
    assert get(smp, "lstrace_rqspinlock_failures_total", errno="ETIMEDOUT", kind="AA",
               caller="htab") == 0
    assert get(smp, "lstrace_rqspinlock_cpu_failures_total", cpu="0", errno="EDEADLK") == 2
    assert get(smp, "lstrace_rqspinlock_cpu_failures_total", cpu="1", errno="ETIMEDOUT") == 1
    assert get(smp, "lstrace_rqspinlock_cpu_failures_total", cpu="1", errno="EDEADLK") == 0
    assert get(smp, "lstrace_rqspinlock_wait_seconds_bucket", le="1.024e-06") == 3
    assert get(smp, "lstrace_rqspinlock_wait_seconds_bucket", le="5.12e-07") == 0
    assert get(smp, "lstrace_rqspinlock_wait_seconds_bucket", le="+Inf") == 3
    per_cpu, _ = samples(snap, per_cpu_latency=True)
    assert get(per_cpu, "lstrace_rqspinlock_wait_seconds_bucket", cpu="0", le="+Inf") == 3
    assert get(per_cpu, "lstrace_rqspinlock_wait_seconds_bucket", cpu="1", le="+Inf") == 0
    assert get(smp, "lstrace_bpf_syscall_errors_total", cmd="MAP_LOOKUP_ELEM",
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


SNAPS = {
    "small": lambda: make_snap(helper={("task_storage_get", 0): {"ok": 1}},
                               latency={("task_storage_get", 0): slots_with([5])},
                               rq_wait={0: slots_with([7, 9])},
                               syscall_errors={(0, "MAP_CREATE", "none", "EPERM"): 1}),
    "synthetic-2": lambda: synthetic_snapshot(2),
    "synthetic-2-big-values": lambda: _big(synthetic_snapshot(2)),
}


def _big(snap):
    """Counts past 2^53 (inexact as floats) and odd label text."""
    snap.helper[("task_storage_get", 0)]["ok"] = 2**60 + 1
    snap.kernel = {"release": 'we"ird\\release\n', "generation": "C"}
    return snap


@pytest.mark.parametrize("name", sorted(SNAPS))
@pytest.mark.parametrize("per_cpu_latency", [False, True])
def test_fast_writer_parses_like_prometheus_client(name, per_cpu_latency):
    """The HTTP writer and prometheus_client's generate_latest give the same
    families, types, label sets and values (prometheus_client's own parser)."""
    snap = SNAPS[name]()
    fast, fast_types = parse(samples(snap, per_cpu_latency)[1])
    ref, ref_types = parse(client_text(snap, per_cpu_latency))
    assert fast_types == ref_types
    drop = lambda d: {k: v for k, v in d.items()  # noqa: E731
                      if k[0] != "lstrace_scrape_duration_seconds"}
    assert drop(fast) == drop(ref)
    assert ("lstrace_scrape_duration_seconds", frozenset()) in fast


@pytest.mark.parametrize("name", sorted(SNAPS))
def test_exposition_passes_promtool(name):
    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (apt-get install prometheus)")
    for text in (samples(SNAPS[name](), True)[1], client_text(SNAPS[name]())):
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_fmt_value_exact_and_go_compatible():
    for v in (0, 1, 999999, 1000000, 123456789, 2**53 + 1, 2**64 - 1):
        assert float(exposition.fmt_value(v)) == float(v)
        assert int(exposition.fmt_value(v)[:-2]) == v        # the exact count
    assert exposition.fmt_value(1) == "1.0"                  # as generate_latest writes it
    assert exposition.fmt_value(1.5e-09) == "1.5e-09"
    assert exposition.fmt_value(float("inf")) == "+Inf"


def test_series_budget_at_256_cpus():
    """Issue 12: every probe attached, every outcome seen, 256 CPUs."""
    body = exporter.SnapshotCollector(lambda: synthetic_snapshot(256)).render()
    series = sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))
    assert series <= 10_000 and len(body) <= 2_000_000, (series, len(body))


def test_series_budget_with_maps_at_256_cpus():
    """--probes +maps (opt-in) on 256 CPUs, every outcome of every probe on every
    CPU, the bucket lock unknown (3 per-CPU map reasons): 6 x 256 calls and 3 x 256
    CPU failures more, bounded (README "Metrics")."""
    body = exporter.SnapshotCollector(lambda: synthetic_snapshot(256, maps=True)).render()
    series = sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))
    assert series <= 11_500, series


@pytest.mark.parametrize("ncpus", [2, 64, 256])
@pytest.mark.parametrize("per_cpu_latency", [False, True])
@pytest.mark.parametrize("maps", [False, True])
def test_series_formula(ncpus, per_cpu_latency, maps):
    """README's formula, for the synthetic snapshot."""
    snap = synthetic_snapshot(ncpus, maps=maps)
    smp, _ = samples(snap, per_cpu_latency)
    # issue 13 adds, per host: a zero series per (probe, reason) that leaves failure
    # events (program="unattributed"), the lost-events counter, and the
    # rqspinlock probe's blind spots (README's formula has them)
    extra = (len(attribution.event_keys(snap)) + 1
             + sum(len(p.blind_spot_keys) for p in snap.probes))
    assert len(smp) == synthetic_formula(snap, per_cpu_latency) + extra


def test_http_app_gzip_and_methods():
    app = exposition.MetricsApp(lambda: b"x_total 1.0\n")
    seen = {}

    def start(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics",
                         "HTTP_ACCEPT_ENCODING": "gzip, deflate"}, start))
    assert gzip.decompress(body) == b"x_total 1.0\n"
    assert seen["headers"]["Content-Encoding"] == "gzip"
    assert seen["headers"]["Content-Type"].startswith("text/plain; version=0.0.4")
    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}, start))
    assert body == b"x_total 1.0\n" and "Content-Encoding" not in seen["headers"]
    app({"REQUEST_METHOD": "POST", "PATH_INFO": "/metrics"}, start)
    assert seen["status"].startswith("405")


# ---- failures by BPF program (issue 13): the event ring, counted once, lost ones said

HOLD_NS = int(attribution.HOLD_S * 1e9)


def ev(seq, cpu, program, source="task_storage_get", outcome="busy", ts=0):
    return FailureEvent(seq, cpu, ts, source, outcome, "comm", program, "caller")


def by_program(smp):
    return {(dict(ls)["program"], dict(ls)["probe"], dict(ls)["reason"]): v
            for (n, ls), v in smp.items() if n == "lstrace_helper_failures_by_program_total"}


class Scrapes:
    """A SnapshotCollector scraped again and again, as `lstrace serve` is."""

    def __init__(self):
        self.snap = None
        self.c = exporter.SnapshotCollector(lambda: self.snap)

    def __call__(self, snap):
        self.snap = snap
        return parse(self.c.render().decode())[0]


def test_failures_by_program_once_each_and_lost_events_unattributed():
    """Two scrapes see overlapping ring contents: no event is counted twice; the
    seqs the ring lost (overwritten) count as unattributed under the counter
    they are missing from, so every (probe, reason) sums to its failure counter."""
    scrape = Scrapes()
    first = [ev(1, 0, "sched_a"), ev(2, 0, "sched_b"), ev(1, 1, "sched_a", outcome="deadlock")]
    snap = make_snap(taken=100.0, helper={("task_storage_get", 0): {"ok": 5, "busy": 2},
                                          ("task_storage_get", 1): {"deadlock": 1}},
                     events=first)
    smp = scrape(snap)
    assert get(smp, "lstrace_failure_events_lost_total") == 0
    # label sets seen for the first time are written with 0: increase() sees the first
    assert set(by_program(smp).values()) == {0}
    assert by_program(smp)[("sched_a", "task_storage_get", "busy")] == 0
    smp = scrape(snap)                                   # the same ring again
    bp = by_program(smp)
    assert bp[("sched_a", "task_storage_get", "busy")] == 1
    assert bp[("sched_b", "task_storage_get", "busy")] == 1
    assert bp[("sched_a", "task_storage_get", "deadlock")] == 1
    assert bp[("unattributed", "task_storage_get", "busy")] == 0
    # CPU 0 then fails 40 more times: the ring (16 slots) keeps seqs 27..42
    ring = [ev(s, 0, "sched_b" if s % 2 else "sched_a", outcome="timeout" if s > 30 else "busy")
            for s in range(27, 43)]
    snap = make_snap(taken=200.0, helper={("task_storage_get", 0): {"busy": 30, "timeout": 12},
                                          ("task_storage_get", 1): {"deadlock": 1}},
                     events=ring + [first[2]])
    scrape(snap)
    smp = scrape(snap)
    bp = by_program(smp)
    assert get(smp, "lstrace_failure_events_lost_total") == 24       # seqs 3..26
    assert bp[("unattributed", "task_storage_get", "busy")] == 24
    assert bp[("unattributed", "task_storage_get", "timeout")] == 0
    for reason, total in (("busy", 30), ("timeout", 12), ("deadlock", 1)):
        got = sum(v for (_, p, r), v in bp.items() if (p, r) == ("task_storage_get", reason))
        assert got == total == get(smp, "lstrace_helper_failures_total",
                                   probe="task_storage_get", reason=reason)
    assert bp[("sched_a", "task_storage_get", "timeout")] == 6       # 32, 34, ..., 42
    assert bp[("sched_b", "task_storage_get", "timeout")] == 6


def test_rqspinlock_failures_by_program_and_kernel_callers():
    scrape = Scrapes()
    events = [ev(1, 0, "repro_aa", source="rqspinlock", outcome="deadlock"),
              ev(2, 0, "", source="rqspinlock", outcome="timeout"),
              ev(3, 0, "other", source="rqspinlock", outcome="deadlock")]
    snap = make_snap(taken=50.0, rq_failures={(0, "EDEADLK", "AA", "res_spin_lock"): 2,
                                              (0, "ETIMEDOUT", "unknown", "htab"): 1},
                     events=events)
    scrape(snap)
    bp = by_program(scrape(snap))
    assert bp[("repro_aa", "rqspinlock", "deadlock")] == 1
    assert bp[("kernel", "rqspinlock", "timeout")] == 1       # no BPF program on the stack
    assert bp[("bpf:other", "rqspinlock", "deadlock")] == 1   # a program really named "other"
    assert bp[("unattributed", "rqspinlock", "deadlock")] == 0


def test_recent_events_wait_for_fresh_symbols():
    """An event is taken HOLD_S after it happened: by then the BPF programs'
    symbols were re-read after it.  A name seen while the program was loaded
    stays with its events after the program is gone."""
    scrape = Scrapes()
    young = make_snap(taken=10.0, helper={("task_storage_get", 0): {"busy": 1}},
                      events=[ev(1, 0, "short_lived", ts=int(10e9) - 10)])
    assert set(by_program(scrape(young))) == {("unattributed", p, r)
                                              for p, r in attribution.event_keys(young)}
    later = make_snap(taken=10.0 + attribution.HOLD_S, helper=young.helper,
                      events=[ev(1, 0, "", ts=int(10e9) - 10)])     # unloaded: no name now
    scrape(later)
    bp = by_program(scrape(later))
    assert bp[("short_lived", "task_storage_get", "busy")] == 1
    assert ("kernel", "task_storage_get", "busy") not in bp


def test_program_names_are_bounded():
    n = attribution.MAX_PROGRAMS + 5
    events = [ev(i + 1, 0, f"prog{i:02d}") for i in range(n)]
    snap = make_snap(taken=100.0, helper={("task_storage_get", 0): {"busy": n}}, events=events)
    scrape = Scrapes()
    scrape(snap)
    bp = by_program(scrape(snap))
    names = {p for p, _, _ in bp} - {"unattributed"}
    assert len(names) == attribution.MAX_PROGRAMS + 1 and "other" in names
    assert bp[("other", "task_storage_get", "busy")] == 5
    assert sum(bp.values()) == n


def test_one_off_plan_counts_what_the_ring_holds():
    """families(snap) without a collector (tests, guests): the ring's old
    events, no zero first sample."""
    snap = make_snap(taken=100.0, helper={("task_storage_get", 0): {"busy": 3}},
                     events=[ev(3, 0, "p1")])
    fams = {f.name: f for f in exporter.families(snap)}
    got = {tuple(s.labels[k] for k in ("program", "probe", "reason")): s.value
           for s in fams["lstrace_helper_failures_by_program"].samples if s.value}
    assert got == {("p1", "task_storage_get", "busy"): 1,
                   ("unattributed", "task_storage_get", "busy"): 2}


def test_blind_spots_follow_the_kernel():
    """The gauge says what the status carries (plan.blind_facts decided it from
    the kernel); a status without keys is read back from its text, else every
    blind spot the mode can have."""
    probes = [ProbeStatus("task_storage_get", "helper", "kprobe", True,
                          blind_spots=("bpf_prog_active",)),
              ProbeStatus("cgrp_storage_get", "helper", "kprobe", True,
                          "blind spots: bpf_prog_active, uncounted_misses"),
              ProbeStatus("task_storage_delete", "helper", "fentry", True),
              ProbeStatus("rqspinlock", "tracepoint", "tracepoint", True,
                          "kallsyms addresses hidden: ..."),
              ProbeStatus("sk_storage_get", "helper", "unavailable", False, "no")]
    smp, _ = samples(make_snap(probes=probes))
    got = {(dict(ls)["probe"], dict(ls)["blind_spot"]) for n, ls in smp
           if n == "lstrace_probe_blind_spot"}
    assert got == {("task_storage_get", "bpf_prog_active"),
                   ("cgrp_storage_get", "bpf_prog_active"),
                   ("cgrp_storage_get", "uncounted_misses"),
                   ("rqspinlock", "pending_path"), ("rqspinlock", "pending_timeout"),
                   ("rqspinlock", "pre_queue_aa"), ("task_storage_delete", "preempted_program")}
