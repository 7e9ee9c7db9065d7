"""Prometheus metrics from Snapshots: what lstrace exports, under a series budget.

The collector reads one fresh snapshot per scrape (ebpf_exporter's model: no
background polling; the one state kept between scrapes is which failure
events were already counted by program, lstrace.attribution).  `plan(snap)` is
a pure function of a Snapshot (and that state) returning Family objects; lstrace.exposition renders
them fast for HTTP, `families()` turns them into prometheus_client families
(textfile, --once, tests).  Metric names are public API (dashboards/ and
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
from itertools import chain, repeat
from operator import itemgetter

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

from . import __version__, probes
from .attribution import MAX_PROGRAMS, Attribution
from .exposition import Renderer
from .layout import BUSY_COUNTERS, CALLERS, NSLOTS, OUTCOMES, RQ_ERRNOS, RQ_KINDS
from .plan import HTAB_LOCK_REASONS
from .probes import MAP_PROBES

NS = 1e-9

# Per-CPU helper failures: the reasons whose cause is local to a CPU.
CPU_REASONS = ("busy", "deadlock", "timeout")
# ... and those a kernel generation can produce (zero series exported from the start)
GEN_CPU_REASONS = {"A": ("busy",), "B": ("busy",), "C": ("deadlock", "timeout")}
# Probes called from inside another probed function: their failures surface
# through the entry point (get, delete, map syscall) that called them, so the
# per-CPU sum leaves them out unless no entry point is attached.
INNER_PROBES = ("local_storage_update", "selem_unlink", "selem_link_map")
# bpf() lock failures reaching user space: pre-rqspinlock htab EBUSY, gen C
# local storage and 6.15+ htab EDEADLK / ETIMEDOUT
SYS_LOCK_ERRNOS = ("EBUSY", "EDEADLK", "ETIMEDOUT")
SYS_LOCK_CMDS = ("MAP_UPDATE_ELEM", "MAP_DELETE_ELEM")
SYS_LOCK_MAP_TYPES = ("task_storage", "cgrp_storage", "sk_storage", "inode_storage", "hash",
                      "other_rqspinlock")


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


_LES = tuple(le_text(s) for s in range(NSLOTS)) + ("+Inf",)
_MIDS = tuple(slot_mid_ns(s) * NS for s in range(NSLOTS))


def bucket_les():
    """The `le` of every bucket, +Inf last."""
    return _LES


def estimated_sum(slots):
    """_sum in seconds: every observation at its slot's midpoint."""
    return sum(n * m for n, m in zip(slots, _MIDS) if n)


def histogram_buckets(slots):
    """log2 slots -> ([(le, cumulative count), ..., ("+Inf", total)], estimated sum in s)."""
    buckets, acc = [], 0
    for le, n in zip(_LES, slots):
        acc += n
        buckets.append((le, acc))
    buckets.append(("+Inf", acc))
    return buckets, estimated_sum(slots)


class Family:
    """One metric family: rows of (label values, value) or, for histograms,
    (label values, log2 slots).  Label values are written as str() of them
    (cpu stays an int: a snapshot's own keys serve as label values, no tuple
    is built per row).  Counter names carry no _total (as in
    prometheus_client); the renderers add it."""
    __slots__ = ("name", "type", "help", "labels", "rows")

    def __init__(self, name, type_, help_, labels=()):
        self.name, self.type, self.help, self.labels = name, type_, help_, tuple(labels)
        self.rows = []

    def add(self, values, value):
        self.rows.append((tuple(values), value))

    def sample_name(self):
        return self.name + "_total" if self.type == "counter" else self.name

    def header(self):
        n = self.sample_name()
        h = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {n} {h}\n# TYPE {n} {self.type}\n"

    def to_client(self):
        """The same family as a prometheus_client metric family."""
        cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
               "histogram": HistogramMetricFamily}[self.type]
        f = cls(self.name, self.help, labels=list(self.labels))
        for values, v in self.rows:
            values = [str(x) for x in values]
            if self.type == "histogram":
                buckets, est = histogram_buckets(v)
                f.add_metric(values, buckets, est)
            else:
                f.add_metric(values, v)
        return f


def _by_cpu(keys):
    return sorted(keys, key=lambda k: (k[0] if isinstance(k, tuple) else k))


def plan(snap, extra_programs=None, per_cpu_latency=False, attribution=None):
    """All metric families for one snapshot (a pure function of the snapshot
    and, for failures by program, the Attribution state across scrapes: a
    fresh one without)."""
    attached = {p.name for p in snap.probes if p.attached}
    out = helper_families(snap, per_cpu_latency)
    out += program_failure_families(snap, attribution)
    out += rqspinlock_families(snap, "rqspinlock" in attached, per_cpu_latency)
    out.append(syscall_family(snap, "bpf_syscall" in attached))

    bs = Family("lstrace_busy_samples", "counter",
                "Timer-tick samples of the local-storage busy counters.", ["cpu"])
    bh = Family("lstrace_busy_held_samples", "counter",
                "Samples in which a busy counter was held.", ["cpu", "counter"])
    for cpu, (samples, held) in sorted(snap.busy_samples.items()):
        bs.add([cpu], samples)
        for counter in BUSY_COUNTERS:
            bh.add([cpu, counter], held.get(counter, 0))
    gs = Family("lstrace_guard_skips", "counter",
                "Events lstrace skipped to avoid recursing into itself.", ["cpu"])
    gs.rows = [((cpu,), n) for cpu, n in sorted(snap.guard_skips.items())]
    out += [bs, bh, gs]

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


def families(snap, extra_programs=None, per_cpu_latency=False, attribution=None):
    """plan() as prometheus_client metric families."""
    return [f.to_client() for f in plan(snap, extra_programs, per_cpu_latency, attribution)]


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


def _sum_slots(rows):
    """Column sums of NSLOTS-long count lists (CPUs' slots -> one histogram).
    Strided slices of one flat list: 3.3 ms for 19 probes x 256 CPUs, where
    sum(zip(*rows)) takes 4.8 ms."""
    flat = list(chain.from_iterable(rows))
    return [sum(flat[s::NSLOTS]) for s in range(NSLOTS)]


_ALL_OUTCOMES = itemgetter(*OUTCOMES)
_CPU_IDX = tuple(OUTCOMES.index(r) for r in CPU_REASONS)


def _outcome_row(counts):
    """{outcome: n} -> a tuple in OUTCOMES order (a hand-built dict may lack some)."""
    try:
        return _ALL_OUTCOMES(counts)
    except KeyError:
        return tuple(counts.get(o, 0) for o in OUTCOMES)


def helper_families(snap, per_cpu_latency):
    calls = Family("lstrace_helper_calls", "counter",
                   "Calls of a local-storage helper (or, with --probes +maps, a hash-map "
                   "operation: lstrace_map_probe_info), per CPU.", ["probe", "cpu"])
    fails = Family("lstrace_helper_failures", "counter",
                   "Failed calls of a local-storage helper (or hash-map operation) by reason, "
                   "summed over CPUs.", ["probe", "reason"])
    cpu_fails = Family("lstrace_helper_cpu_failures", "counter",
                       "Helper calls that failed on this CPU for a CPU-local reason (busy "
                       "counter held, rqspinlock deadlock or timeout), summed over the entry "
                       "probes (gets, deletes, map syscalls).", ["cpu", "reason"])
    lat = Family("lstrace_helper_latency_seconds", "histogram",
                 "Helper call latency (log2 buckets; _sum estimated from bucket midpoints).",
                 ["probe", "cpu"] if per_cpu_latency else ["probe"])
    # label values may be ints (cpu): the renderers write str() of them.  The
    # sums run on tuples in C loops; the Python loop only groups rows.
    entry_only = any(p not in INNER_PROBES and p not in MAP_PROBES for p, _ in snap.helper)
    try:
        rows = list(map(_ALL_OUTCOMES, snap.helper.values()))
    except KeyError:            # a hand-built snapshot without every outcome
        rows = [_outcome_row(c) for c in snap.helper.values()]
    calls.rows = list(zip(snap.helper, map(sum, rows)))
    by_probe, by_cpu = {}, {}
    for (probe, cpu), row in zip(snap.helper, rows):
        by_probe.setdefault(probe, []).append(row)
        if not (entry_only and probe in INNER_PROBES) and probe not in MAP_PROBES:
            by_cpu.setdefault(cpu, []).append(row)
    for probe in sorted(by_probe):
        totals = list(map(sum, zip(*by_probe[probe])))
        fails.rows += [((probe, r), n) for r, n in zip(OUTCOMES[1:], totals[1:])]
    per_cpu = {cpu: list(map(sum, zip(*v))) for cpu, v in by_cpu.items()}
    possible = GEN_CPU_REASONS.get(str(snap.kernel.get("generation", "")), CPU_REASONS)
    for cpu in sorted(per_cpu):
        sums = per_cpu[cpu]
        for r, i in zip(CPU_REASONS, _CPU_IDX):
            if sums[i] or r in possible:
                cpu_fails.rows.append(((cpu, r), sums[i]))
    if per_cpu_latency:
        lat.rows = list(snap.latency.items())
    else:
        by = {}
        for (probe, _cpu), slots in snap.latency.items():
            by.setdefault(probe, []).append(slots)
        lat.rows = [((probe,), _sum_slots(by[probe])) for probe in sorted(by)]
    # latency is opt-in (serve --latency): without it the family is absent, not zero
    return [calls, fails, cpu_fails] + ([lat] if snap.latency else []) + \
        map_families(snap, by_cpu_maps(snap.helper, rows))


def by_cpu_maps(helper, rows):
    """cpu -> [outcome rows] of the map probes (helper's keys, rows in OUTCOMES order)."""
    out = {}
    for (probe, cpu), row in zip(helper, rows):
        if probe in MAP_PROBES:
            out.setdefault(cpu, []).append(row)
    return out


def map_families(snap, by_cpu):
    """The map-operation probes (--probes +maps): their calls and failures are in the
    helper families under their probe names; here what only they have: the per-CPU
    failures of hash-map locks, and which function and map type each probe is."""
    attached = [p for p in snap.probes if p.attached and p.name in MAP_PROBES]
    info = Family("lstrace_map_probe_info", "gauge",
                  "A map-operation probe (--probes +maps): the kernel function it probes and "
                  "the map type it serves (always 1; join on probe).",
                  ["probe", "function", "map_type"])
    for p in attached:
        hp = probes.helper(p.name)
        info.add([p.name, hp.func, hp.map_type], 1)
    cpu_fails = Family("lstrace_map_cpu_failures", "counter",
                       "Hash-map updates/deletes that failed on this CPU for a CPU-local lock "
                       "reason (busy: the per-CPU map_locked guard, before 6.15; deadlock / "
                       "timeout: the bucket's rqspinlock, 6.15+), summed over the map probes.",
                       ["cpu", "reason"])
    if not attached and not by_cpu:
        return []
    possible = HTAB_LOCK_REASONS.get(str(snap.kernel.get("htab_lock", "")),
                                     HTAB_LOCK_REASONS[""]) if attached else ()
    cpus = sorted(set(by_cpu) | (set(snap.cpus) if attached else set()))
    for cpu in cpus:
        sums = list(map(sum, zip(*by_cpu[cpu]))) if by_cpu.get(cpu) else [0] * len(OUTCOMES)
        for r, i in zip(CPU_REASONS, _CPU_IDX):
            if sums[i] or r in possible:
                cpu_fails.rows.append(((cpu, r), sums[i]))
    return [info, cpu_fails]


_RQ_CUBE = tuple((e, k, c) for e in RQ_ERRNOS for k in RQ_KINDS for c in CALLERS)
_rq_keys = {}       # CPU ids -> every (cpu, errno, kind, caller), CPU-major


def _rq_sums(failures, cpu_ids):
    """(cpu, errno, kind, caller) -> n  to  {(errno, kind, caller): n} and
    {(cpu, errno): n}.  Fast path: read the whole known cube with one C-level
    map() and sum strided slices (2.0 vs 3.5 ms for 256 CPUs, every entry
    non-zero); a key outside the cube (hand-built snapshots) takes the loop."""
    cpu_ids = tuple(cpu_ids)
    keys = _rq_keys.get(cpu_ids)
    if keys is None:
        _rq_keys.clear()            # one CPU set at a time: bounded
        keys = _rq_keys[cpu_ids] = [(c,) + k for c in cpu_ids for k in _RQ_CUBE]
    vals = list(map(failures.get, keys, repeat(0)))
    if len(vals) - vals.count(0) == len(failures) - list(failures.values()).count(0):
        n, half = len(_RQ_CUBE), len(_RQ_CUBE) // len(RQ_ERRNOS)
        cube = {k: sum(vals[i::n]) for i, k in enumerate(_RQ_CUBE)}
        cpus = {}
        for j, cpu in enumerate(cpu_ids):
            for e, err in enumerate(RQ_ERRNOS):
                cpus[(cpu, err)] = sum(vals[j * n + e * half:j * n + (e + 1) * half])
        # what was seen only: the zero series are the caller's choice
        return ({k: v for k, v in cube.items() if v}, {k: v for k, v in cpus.items() if v})
    cube, cpus = {}, {}
    for key, n in failures.items():
        cube[key[1:]] = cube.get(key[1:], 0) + n
        cpus[key[:2]] = cpus.get(key[:2], 0) + n
    return cube, cpus


def rqspinlock_families(snap, attached, per_cpu_latency):
    rq = Family("lstrace_rqspinlock_failures", "counter",
                "rqspinlock acquisitions that failed (EDEADLK: deadlock detected, ETIMEDOUT: "
                "timeout), by kind and caller, summed over CPUs.", ["errno", "kind", "caller"])
    rq_cpu = Family("lstrace_rqspinlock_cpu_failures", "counter",
                    "rqspinlock acquisitions that failed on this CPU, by errno.",
                    ["cpu", "errno"])
    cube, cpus = _rq_sums(snap.rq_failures, snap.cpus)
    cpus_get = cpus.get
    errnos = list(RQ_ERRNOS) + sorted({e for _, e in cpus} - set(RQ_ERRNOS))
    cpu_ids = {c for c, _ in cpus}
    if attached:      # the whole bounded cube, zeros included: the first failure counts
        for key in ((e, k, c) for e in RQ_ERRNOS for k in RQ_KINDS for c in CALLERS):
            cube.setdefault(key, 0)
        cpu_ids.update(snap.cpus)
    rq.rows = [(key, cube[key]) for key in sorted(cube)]
    for cpu in sorted(cpu_ids):
        rq_cpu.rows += [((cpu, e), cpus_get((cpu, e), 0)) for e in errnos]
    wait = Family("lstrace_rqspinlock_wait_seconds", "histogram",
                  "rqspinlock slow-path wait (log2 buckets; _sum estimated from bucket "
                  "midpoints).", ["cpu"] if per_cpu_latency else [])
    if per_cpu_latency:
        for cpu, slots in sorted(snap.rq_wait.items()):
            wait.add([cpu], slots)
    elif snap.rq_wait:
        wait.add([], _sum_slots(list(snap.rq_wait.values())))
    return [rq, rq_cpu] + ([wait] if snap.rq_wait else [])


def syscall_family(snap, attached):
    sysc = Family("lstrace_bpf_syscall_errors", "counter",
                  "bpf() syscalls that failed, by command, errno and map type, summed over "
                  "CPUs.", ["cmd", "errno", "map_type"])
    cube = {}
    for (_cpu, cmd, mtype, err), n in snap.syscall_errors.items():
        cube[(cmd, err, mtype)] = cube.get((cmd, err, mtype), 0) + n
    if attached:      # lock failures reaching user space: zeros from the start
        for key in ((c, e, m) for c in SYS_LOCK_CMDS for e in SYS_LOCK_ERRNOS
                    for m in SYS_LOCK_MAP_TYPES):
            cube.setdefault(key, 0)
    for key in sorted(cube):
        sysc.add(key, cube[key])
    return sysc


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
        self._renderer = Renderer(_LES, estimated_sum)
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
            fams = plan(snap, extra, self.per_cpu_latency, self._attribution)
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
