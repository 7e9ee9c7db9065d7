"""Prometheus metrics from Snapshots: a prometheus_client Collector.

The collector reads one fresh snapshot per scrape (ebpf_exporter's model: no
background polling, no state between scrapes) and turns it into metric
families.  `families(snap)` is a pure function of a Snapshot, so every metric
is unit-tested with hand-built snapshots.

Metric names are public API (dashboards/ and dashboards/alerts.yml use them):

  lstrace_helper_calls_total{probe,cpu}
  lstrace_helper_failures_total{probe,cpu,reason}      reason: busy deadlock timeout nomem
                                                        not_found other
  lstrace_helper_latency_seconds{probe,cpu}            histogram
  lstrace_rqspinlock_failures_total{cpu,errno,kind,caller}
  lstrace_rqspinlock_wait_seconds{cpu}                 histogram
  lstrace_bpf_syscall_errors_total{cpu,cmd,errno,map_type}
  lstrace_busy_samples_total{cpu}, lstrace_busy_held_samples_total{cpu,counter}
  lstrace_guard_skips_total{cpu}
  lstrace_probe_attached{probe,mode}                   1 attached, 0 not (mode "unavailable")
  lstrace_probe_blind_spot{probe,mode,blind_spot}      1: calls this probe's mode cannot see
  lstrace_probe_missed_calls_total{probe,mode}         calls the kernel ran without our program
  lstrace_bpf_program_runs_total{program}              needs BPF stats (serve turns them on)
  lstrace_bpf_program_run_seconds_total{program}
  lstrace_bpf_program_recursion_misses_total{program}
  lstrace_build_info{version}, lstrace_kernel_info{release,generation}
  lstrace_scrape_duration_seconds

Labels are bounded: cpu, probe, reason/errno/kind/caller/cmd/map_type from
fixed tables in lstrace.layout, program *names* (never ids, pids, comms or
addresses).  Series whose count is zero are still exported where the label set
is small (helper outcomes per probe and CPU, histograms); the sparse tables
(rqspinlock failures, bpf() errors) export only the label sets seen so far,
like ebpf_exporter does for hash maps.

Histograms.  lstrace counts log2 slots: slot 0 holds 0..1 ns, slot s holds
(2^(s-1), 2^s] ns, so slot s maps exactly onto the cumulative bucket
le = 2^s ns (written in seconds); +Inf equals _count.  A log2 histogram does
not know the sum of the observations, but the exposition format requires
_sum, so _sum is an *estimate*: each observation counts as the midpoint of its
slot (0.5 ns for slot 0, 0.75 * 2^s ns for slot s).  It is within a factor
4/3 of the truth for every observation; use the buckets (histogram_quantile)
for anything precise.
"""
import threading
import time

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

from . import __version__
from .layout import BUSY_COUNTERS, FAILURE_REASONS, NSLOTS
from .plan import BLIND_SPOT_KEYS

NS = 1e-9


def slot_upper_ns(s):
    """Upper bound (inclusive) of log2 slot s in ns: a Prometheus `le`."""
    return 1 << s


def slot_mid_ns(s):
    return 0.5 if s == 0 else 0.75 * (1 << s)


def le_text(s):
    """The `le` label of slot s, in seconds, as prometheus_client would print it."""
    return _fmt(slot_upper_ns(s) * NS)


def _fmt(v):
    # repr() of a float is the shortest round-tripping text: 1e-09, 2e-09, 4.096e-06, ...
    return repr(float(v))


def value_slot(ns):
    """The slot an observation of `ns` nanoseconds falls in (the BPF side's rule)."""
    ns = int(ns)
    if ns <= 1:
        return 0
    return min((ns - 1).bit_length(), NSLOTS - 1)


def histogram_buckets(slots):
    """log2 slots -> ([(le, cumulative count), ..., ("+Inf", total)], estimated sum in s)."""
    buckets, acc, total_ns = [], 0, 0.0
    for s, n in enumerate(slots):
        acc += n
        total_ns += n * slot_mid_ns(s)
        buckets.append((le_text(s), acc))
    buckets.append(("+Inf", acc))
    return buckets, total_ns * NS


def _cpu(c):
    return str(c)


def families(snap, extra_programs=None):
    """All metric families for one snapshot (a pure function: unit-tested)."""
    out = []
    calls = CounterMetricFamily("lstrace_helper_calls",
                                "Calls of a local-storage helper, per CPU.",
                                labels=["probe", "cpu"])
    fails = CounterMetricFamily("lstrace_helper_failures",
                                "Failed calls of a local-storage helper, per CPU and reason.",
                                labels=["probe", "cpu", "reason"])
    lat = HistogramMetricFamily("lstrace_helper_latency_seconds",
                                "Helper call latency (log2 buckets; _sum estimated from "
                                "bucket midpoints).", labels=["probe", "cpu"])
    for (probe, cpu), outcomes in sorted(snap.helper.items()):
        calls.add_metric([probe, _cpu(cpu)], sum(outcomes.values()))
        for reason in FAILURE_REASONS:
            fails.add_metric([probe, _cpu(cpu), reason], outcomes.get(reason, 0))
    for (probe, cpu), slots in sorted(snap.latency.items()):
        buckets, est = histogram_buckets(slots)
        lat.add_metric([probe, _cpu(cpu)], buckets, est)
    out += [calls, fails, lat]

    rq = CounterMetricFamily("lstrace_rqspinlock_failures",
                             "rqspinlock acquisitions that failed (EDEADLK: deadlock detected, "
                             "ETIMEDOUT: timeout), by kind and caller.",
                             labels=["cpu", "errno", "kind", "caller"])
    for (cpu, err, kind, caller), n in sorted(snap.rq_failures.items(), key=str):
        rq.add_metric([_cpu(cpu), err, kind, caller], n)
    wait = HistogramMetricFamily("lstrace_rqspinlock_wait_seconds",
                                 "rqspinlock slow-path wait (log2 buckets; _sum estimated "
                                 "from bucket midpoints).", labels=["cpu"])
    for cpu, slots in sorted(snap.rq_wait.items()):
        buckets, est = histogram_buckets(slots)
        wait.add_metric([_cpu(cpu)], buckets, est)
    out += [rq, wait]

    sysc = CounterMetricFamily("lstrace_bpf_syscall_errors",
                               "bpf() syscalls that failed, by command, errno and map type.",
                               labels=["cpu", "cmd", "errno", "map_type"])
    for (cpu, cmd, mtype, err), n in sorted(snap.syscall_errors.items(), key=str):
        sysc.add_metric([_cpu(cpu), cmd, err, mtype], n)
    out.append(sysc)

    bs = CounterMetricFamily("lstrace_busy_samples",
                             "Timer-tick samples of the local-storage busy counters.",
                             labels=["cpu"])
    bh = CounterMetricFamily("lstrace_busy_held_samples",
                             "Samples in which a busy counter was held.",
                             labels=["cpu", "counter"])
    for cpu, (samples, held) in sorted(snap.busy_samples.items()):
        bs.add_metric([_cpu(cpu)], samples)
        for counter in BUSY_COUNTERS:
            bh.add_metric([_cpu(cpu), counter], held.get(counter, 0))
    gs = CounterMetricFamily("lstrace_guard_skips",
                             "Events lstrace skipped to avoid recursing into itself.",
                             labels=["cpu"])
    for cpu, n in sorted(snap.guard_skips.items()):
        gs.add_metric([_cpu(cpu)], n)
    out += [bs, bh, gs]

    att = GaugeMetricFamily("lstrace_probe_attached",
                            "1 if the probe is attached (mode = how), 0 if not "
                            "(mode=\"unavailable\").", labels=["probe", "mode"])
    for p in snap.probes:
        att.add_metric([p.name, p.mode], 1 if p.attached else 0)
    out.append(att)
    out += blind_spot_families(snap)

    out += program_families(list(snap.programs) + list(extra_programs or ()))

    bi = GaugeMetricFamily("lstrace_build_info", "lstrace version (always 1).",
                           labels=["version"])
    bi.add_metric([__version__], 1)
    ki = GaugeMetricFamily("lstrace_kernel_info",
                           "Running kernel; generation A/B/C of local storage (always 1).",
                           labels=["release", "generation"])
    ki.add_metric([str(snap.kernel.get("release", "")), str(snap.kernel.get("generation", ""))], 1)
    out += [bi, ki]
    return out


def blind_spot_families(snap):
    """What each attached helper probe cannot see, and how much it missed.

    kprobe mode is blind while bpf_prog_active is held (inside bpf() map
    syscalls, under perf-based BPF programs); the kernel counts those skipped
    runs as recursion_misses of the program on 6.12+ (6.1 drops them
    silently, which the blind-spot gauge still says)."""
    blind = GaugeMetricFamily("lstrace_probe_blind_spot",
                              "1 for each class of calls an attached probe cannot see in its "
                              "mode (blind_spot=bpf_prog_active: calls inside bpf() map "
                              "syscalls and under kprobe/tracepoint/perf_event programs).",
                              labels=["probe", "mode", "blind_spot"])
    missed = CounterMetricFamily("lstrace_probe_missed_calls",
                                 "Calls of the probed function the kernel ran without lstrace's "
                                 "program (its exit program's recursion_misses).",
                                 labels=["probe", "mode"])
    modes = {p.name: p.mode for p in snap.probes if p.attached}
    for p in snap.probes:
        if p.attached and p.kind == "helper":
            for key in BLIND_SPOT_KEYS.get(p.mode, ()):
                blind.add_metric([p.name, p.mode, key], 1)
    for prog in snap.programs:
        if prog.role == "exit" and prog.probe in modes:
            missed.add_metric([prog.probe, modes[prog.probe]], prog.recursion_misses)
    return [blind, missed]


def program_families(programs):
    """BPF program health, summed by program name (ids change on every load)."""
    by_name = {}
    for p in programs:
        name = p.name or "unnamed"
        runs, ns, miss = by_name.get(name, (0, 0, 0))
        by_name[name] = (runs + p.run_cnt, ns + p.run_time_ns, miss + p.recursion_misses)
    runs = CounterMetricFamily("lstrace_bpf_program_runs",
                               "Runs of a BPF program (counted while BPF stats are enabled).",
                               labels=["program"])
    secs = CounterMetricFamily("lstrace_bpf_program_run_seconds",
                               "Time spent running a BPF program (while BPF stats are enabled).",
                               labels=["program"])
    miss = CounterMetricFamily("lstrace_bpf_program_recursion_misses",
                               "Runs of a BPF program the kernel skipped (recursion "
                               "protection).", labels=["program"])
    for name, (r, ns, m) in sorted(by_name.items()):
        runs.add_metric([name], r)
        secs.add_metric([name], ns * NS)
        miss.add_metric([name], m)
    return [runs, secs, miss]


def host_programs(exclude_ids=()):
    """ProgramStats of every other BPF program on the host (needs CAP_SYS_ADMIN
    for BPF_PROG_GET_NEXT_ID / GET_FD_BY_ID)."""
    from . import bpfsys
    from .snapshot import ProgramStats
    return [ProgramStats(i.id, i.name, i.run_cnt, i.run_time_ns, i.recursion_misses, ours=False)
            for i in bpfsys.iter_prog_infos(exclude_ids)]


class SnapshotCollector:
    """A prometheus_client collector: one snapshot per scrape, serialised."""

    def __init__(self, snapshot_fn, all_programs=False):
        self.snapshot_fn = snapshot_fn
        self.all_programs = all_programs
        self._lock = threading.Lock()

    def describe(self):
        return []      # unchecked collector: names come from collect()

    def collect(self):
        t0 = time.perf_counter()
        with self._lock:
            snap = self.snapshot_fn()
            extra = []
            if self.all_programs:
                extra = host_programs({p.id for p in snap.programs})
        fams = families(snap, extra)
        dur = GaugeMetricFamily("lstrace_scrape_duration_seconds",
                                "Time lstrace took to read its maps and build this scrape.")
        dur.add_metric([], time.perf_counter() - t0)
        yield from fams
        yield dur
