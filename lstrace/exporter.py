"""Prometheus metrics from Snapshots: what lstrace exports, under a series budget.

The collector reads one fresh snapshot per scrape (ebpf_exporter's model: no
background polling; the one state kept between scrapes is which failure
events were already counted by program, lstrace.attribution).
`metric_families(snap)`, every series lstrace exports for one snapshot, is a
pure function of a Snapshot (and that state) returning Family objects;
lstrace.exposition renders them fast for HTTP, `families()` turns them into
prometheus_client families (textfile, --once, tests).  Metric names are public API (dashboards/ and
dashboards/alerts.yml use them):

  per CPU (cpu label)
  lstrace_helper_calls_total{probe,cpu}                 attached helper probes x CPUs
  lstrace_helper_cpu_failures_total{cpu,reason}         busy deadlock timeout: the CPU-local
                                                        failures, summed over entry probes
  lstrace_rqspinlock_cpu_failures_total{cpu,errno}      EDEADLK ETIMEDOUT
  lstrace_busy_samples_total{cpu}, lstrace_busy_held_samples_total{cpu,counter}
  lstrace_guard_skips_total{cpu}
  lstrace_map_cpu_failures_total{cpu,reason}            busy deadlock timeout of the map probes
                                                        (--probes +maps), summed over them
  per probe / per host
  lstrace_map_probe_info{probe,function,map_type}       the map probes' functions and map types
  lstrace_helper_failures_total{probe,reason}           busy deadlock timeout nomem not_found
                                                        other, summed over CPUs
  lstrace_helper_latency_seconds{probe}                 histogram ({probe,cpu} with
                                                        --per-cpu-latency)
  lstrace_rqspinlock_failures_total{errno,kind,caller}  summed over CPUs
  lstrace_rqspinlock_wait_seconds                       histogram ({cpu} with --per-cpu-latency)
  lstrace_bpf_syscall_errors_total{cmd,errno,map_type}  summed over CPUs
  lstrace_helper_failures_by_program_total{program,probe,reason}
                                                        the failing call's BPF program (at
                                                        most 20 names + other, kernel,
                                                        unattributed; lstrace.attribution)
  lstrace_failure_events_lost_total                     failure events overwritten in the
                                                        per-CPU ring before a scrape read them
  lstrace_probe_attached{probe,mode}                    1 attached, 0 not (mode "unavailable")
  lstrace_probe_blind_spot{probe,mode,blind_spot}       1: what this probe cannot see on this
                                                        kernel (lstrace.plan.BLIND_SPOT_TEXT)
  lstrace_probe_missed_calls_total{probe,mode}          calls the kernel ran without our program
  lstrace_bpf_program_runs_total{program}               needs BPF stats (serve turns them on)
  lstrace_bpf_program_run_seconds_total{program}
  lstrace_bpf_program_recursion_misses_total{program}
  lstrace_build_info{version}, lstrace_kernel_info{release,generation}
  lstrace_scrape_duration_seconds

Series budget (issue 12): a series per CPU only where the mission needs the
CPU, everything else summed over CPUs, so a CPU adds at most H + 3 + 2 + 3
+ 1 series (calls of H attached helper probes, failure reasons, rqspinlock
errnos, busy samples, guard skips), not the ~1,090 of per-CPU histograms and
per-CPU cubes.  README "Metrics" has the formula and the measured table.

The first failure counts: rate()/increase() cannot see a series' first
sample, so every failure counter an alert reads exists from attach time with
0: the per-CPU failure reasons this kernel generation can produce (busy on
A/B, deadlock/timeout on C), every (errno, kind, caller) of rqspinlock, every
reason of every attached helper probe, and the lock errnos (EBUSY, EDEADLK,
ETIMEDOUT) of map update/delete on local-storage and rqspinlock map types for
bpf().  Other bpf() errors appear once seen (the cube has 1,680 label sets).
A non-zero count is always exported, possible or not.

Labels are bounded: cpu, probe, reason/errno/kind/caller/cmd/map_type from
fixed tables in lstrace.layout, program *names* (never ids, pids, comms or
addresses).

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

from . import __version__, probes
from .attribution import MAX_PROGRAMS, Attribution
from .exposition import Renderer
# the histogram's Prometheus form and Family are shared with the probe modules
from .family import LES, NS, Family, estimated_sum


def metric_families(snap, extra_programs=None, per_cpu_latency=False, attribution=None):
    """All metric families for one snapshot (a pure function of the snapshot
    and, for failures by program, the Attribution state across scrapes: a
    fresh one without)."""
    attached = {p.name for p in snap.probes if p.attached}
    # the helper families first, then failures by program, then every other
    # probe's families (MODULES' order): the order the exposition always had
    helpers, *others = probes.MODULES
    out = helpers.families(snap, attached, per_cpu_latency)
    out += program_failure_families(snap, attribution)
    for m in others:
        out += m.families(snap, attached, per_cpu_latency)
    gs = Family("lstrace_guard_skips", "counter",
                "Events lstrace skipped to avoid recursing into itself.", ["cpu"])
    gs.rows = [((cpu,), n) for cpu, n in sorted(snap.guard_skips.items())]
    out.append(gs)

    att = Family("lstrace_probe_attached", "gauge",
                 "1 if the probe is attached (mode = how), 0 if not (mode=\"unavailable\").",
                 ["probe", "mode"])
    for p in snap.probes:
        att.add([p.name, p.mode], 1 if p.attached else 0)
    out.append(att)
    out += blind_spot_families(snap)
    out += program_families(list(snap.programs) + list(extra_programs or ()))

    bi = Family("lstrace_build_info", "gauge", "lstrace version (always 1).", ["version"])
    bi.add([__version__], 1)
    ki = Family("lstrace_kernel_info", "gauge",
                "Running kernel; generation A/B/C of local storage (always 1).",
                ["release", "generation"])
    ki.add([str(snap.kernel.get("release", "")), str(snap.kernel.get("generation", ""))], 1)
    out += [bi, ki]
    return out


def helper_families(snap, per_cpu_latency=False):
    """The helper family's families alone (lstrace.probes.helpers builds them):
    the map-probe tests read their per-CPU failures here."""
    return probes.helpers.families(snap, set(), per_cpu_latency)


def families(snap, extra_programs=None, per_cpu_latency=False, attribution=None):
    """metric_families() as prometheus_client metric families."""
    return [f.to_client() for f in metric_families(snap, extra_programs, per_cpu_latency, attribution)]


def program_failure_families(snap, attribution=None):
    """Failures by the calling BPF program's name, from the failure events
    (lstrace.attribution: each counted once, lost ones said)."""
    att = attribution or Attribution(announce=False)
    att.update(snap)
    fam = Family("lstrace_helper_failures_by_program", "counter",
                 f"Failed helper calls and rqspinlock acquisitions by the BPF program on the "
                 f"failing call's stack (names; the first {MAX_PROGRAMS} to fail, later ones "
                 f"program=\"other\"; \"kernel\": no BPF program on the stack; "
                 f"\"unattributed\": failure events lost in the per-CPU ring, by the counter "
                 f"they are missing from). Counted ~2.5 s after the failure; summed over "
                 f"programs it equals lstrace_helper_failures_total (reasons but not_found) "
                 f"and lstrace_rqspinlock_failures_total.", ["program", "probe", "reason"])
    fam.rows = att.rows(snap)
    lost = Family("lstrace_failure_events_lost", "counter",
                  "Failure events overwritten in lstrace's per-CPU ring before a scrape read "
                  "them (more failures on a CPU between two scrapes than the ring holds): "
                  "their program is unknown.")
    lost.add([], att.lost)
    return [fam, lost]


def blind_spot_families(snap):
    """What each attached probe cannot see on this kernel, and how much the
    kernel counted as skipped.

    The blind spots follow the kernel (lstrace.plan.blind_facts: BTF and
    kallsyms facts): kprobe mode is blind while bpf_prog_active is held, on
    kernels without trace_call_bpf_faultable also under syscalls:* tracepoint
    programs, and before 6.7 it is not counted; the rqspinlock tracepoint
    misses pending-path failures everywhere and, from 6.19, AA deadlocks found
    before queueing."""
    blind = Family("lstrace_probe_blind_spot", "gauge",
                   "1 for each class of calls or failures an attached probe cannot see on this "
                   "kernel in its mode (lstrace doctor explains each blind_spot).",
                   ["probe", "mode", "blind_spot"])
    missed = Family("lstrace_probe_missed_calls", "counter",
                    "Calls of the probed function the kernel ran without lstrace's program "
                    "(its exit program's recursion_misses).", ["probe", "mode"])
    modes = {p.name: p.mode for p in snap.probes if p.attached}
    for p in snap.probes:
        for key in p.blind_spot_keys:
            blind.add([p.name, p.mode, key], 1)
    for prog in snap.programs:
        if prog.role == "exit" and prog.probe in modes:
            missed.add([prog.probe, modes[prog.probe]], prog.recursion_misses)
    return [blind, missed]


def program_families(programs):
    """BPF program health, summed by program name (ids change on every load)."""
    by_name = {}
    for p in programs:
        name = p.name or "unnamed"
        runs, ns, miss = by_name.get(name, (0, 0, 0))
        by_name[name] = (runs + p.run_cnt, ns + p.run_time_ns, miss + p.recursion_misses)
    runs = Family("lstrace_bpf_program_runs", "counter",
                  "Runs of a BPF program (counted while BPF stats are enabled).", ["program"])
    secs = Family("lstrace_bpf_program_run_seconds", "counter",
                  "Time spent running a BPF program (while BPF stats are enabled).",
                  ["program"])
    miss = Family("lstrace_bpf_program_recursion_misses", "counter",
                  "Runs of a BPF program the kernel skipped (recursion protection).",
                  ["program"])
    for name, (r, ns, m) in sorted(by_name.items()):
        runs.add([name], r)
        secs.add([name], ns * NS)
        miss.add([name], m)
    return [runs, secs, miss]


def host_programs(exclude_ids=()):
    """ProgramStats of every other BPF program on the host (needs CAP_SYS_ADMIN
    for BPF_PROG_GET_NEXT_ID / GET_FD_BY_ID)."""
    from . import bpfsys
    from .snapshot import ProgramStats
    return [ProgramStats(i.id, i.name, i.run_cnt, i.run_time_ns, i.recursion_misses)
            for i in bpfsys.iter_prog_infos(exclude_ids)]


class SnapshotCollector:
    """One snapshot per scrape, serialised.  `collect()` makes it a
    prometheus_client collector (textfile, --once); `render()` is the fast
    text for HTTP (lstrace.exposition)."""

    def __init__(self, snapshot_fn, all_programs=False, per_cpu_latency=False):
        self.snapshot_fn = snapshot_fn
        self.all_programs = all_programs
        self.per_cpu_latency = per_cpu_latency
        self._lock = threading.Lock()
        self._renderer = Renderer(LES, estimated_sum)
        self._attribution = Attribution()     # failures by program, across scrapes

    def describe(self):
        return []      # unchecked collector: names come from collect()

    def _families(self):
        """This scrape's families, its start time and its (empty) duration gauge."""
        t0 = time.perf_counter()
        with self._lock:
            snap = self.snapshot_fn()
            extra = []
            if self.all_programs:
                extra = host_programs({p.id for p in snap.programs})
            fams = metric_families(snap, extra, self.per_cpu_latency, self._attribution)
        dur = Family("lstrace_scrape_duration_seconds", "gauge",
                     "Time lstrace took to read its maps and build this scrape.")
        fams.append(dur)
        return fams, t0, dur

    def collect(self):
        fams, t0, dur = self._families()
        dur.add([], time.perf_counter() - t0)
        return [f.to_client() for f in fams]

    def render(self):
        """The text exposition (bytes); the scrape duration covers formatting
        all but its own line."""
        fams, t0, dur = self._families()
        body = self._renderer.render(fams[:-1])
        dur.add([], time.perf_counter() - t0)
        return body + self._renderer.render([dur])
