"""rqspinlock: failed rqspinlock acquisitions (-EDEADLK / -ETIMEDOUT) at
lock:contention_end, by kind (AA / ABBA) and caller, and (--latency) the
slow-path wait from lock:contention_begin.  Raw tracepoints: unlike
perf-based ones they also run inside bpf() map syscalls.

C: bpf/probes/rqspinlock.bpf.c.  The `callers` table it searches (address
ranges of the kernel's rqspinlock users) is declared in bpf/core/state.bpf.c and
filled by the loader while BCC compiles (rqspinlock_kernel.caller_ranges).
"""
from itertools import repeat

from ..family import Family, sum_slots
from ..layout import CALLERS, NSLOTS, RQ_ERRNOS, RQ_KINDS
from . import lock_users, trial
from .tracepoint import TracepointProbe

NAME = "rqspinlock"
PROBE = TracepointProbe(NAME, (("lock", "contention_begin"), ("lock", "contention_end")),
                        "rqspinlock failures (-EDEADLK/-ETIMEDOUT) at lock:contention_end, "
                        "queued path only, by kind and caller",
                        (("raw_tp", "contention_begin", "lst_contention_begin"),
                         ("raw_tp", "contention_end", "lst_contention_end")))
NAMES = (NAME,)
ORDER = 20
COUNTS = ("rq_failures", "rq_wait")
EVENT_SOURCES = (NAME,)     # rqspinlock_kfunc's failures are recorded as this probe's too
# aa / abba / nmi: the rqspinlock failures among "deadlock" / "timeout", by kind (cpu_counts)
CPU_KEYS = (("aa", "AA/s", False, "deadlock"), ("abba", "ABBA/s", False, "aa"),
            ("nmi", "NMI/s", False, "abba"))
SLOWPATH = "resilient_queued_spin_lock_slowpath"


def plan(kernel, p, mode="auto"):
    if not trial.try_events(kernel, p, PROBE.events):
        return p
    if not kernel.kallsyms.range_of(SLOWPATH):
        if not kernel.has_func(SLOWPATH):
            p.reason = "no rqspinlock on this kernel (before 6.15)"
            return p
        # BTF has it: kallsyms hides addresses (kptr_restrict; CAP_BPF + CAP_PERFMON
        # without CAP_SYSLOG).  Failures still count, with less detail.
        p.reason = ("kallsyms addresses hidden: failures count with caller 'other' and kind "
                    "'unknown', no wait histogram")
    p.mode = "tracepoint"
    return p


# lock:contention_begin/end fire on the queued slow path only
# (kernel/bpf/rqspinlock.c resilient_queued_spin_lock_slowpath)
BLIND_SPOT_TEXT = {
    "pending_path": (
        "AA/ABBA deadlocks found by the pending-bit waiter (a lock with no queue) return "
        "without lock:contention_end (every kernel with rqspinlock; measured on 6.18: "
        "the repro's 2,106 pending-path deadlocks never showed)"),
    "pending_timeout": (
        "a pending-bit waiter's timeout (250 ms) returns the same way, without "
        "lock:contention_end (every kernel with rqspinlock)"),
    "pre_queue_aa": (
        "AA deadlocks are found before queueing (6.19+: 5860f5ce479f, 087849cca31d) and "
        "return without lock:contention_begin/end (measured on 7.3: none of the repro's AA "
        "aborts showed); the helper and bpf() probes see them"),
}


def blind_spots(mode, facts=None):
    if mode != "tracepoint":
        return ()
    if facts is None or facts.pre_queue_aa:
        return tuple(BLIND_SPOT_TEXT)
    return ("pending_path", "pending_timeout")


# ---- counters: failures by errno x kind x caller; the wait histogram (--latency)
def blocks(nprobes):
    return [("rq", (("N_RQ_ERRNO", len(RQ_ERRNOS)), ("N_RQ_KIND", len(RQ_KINDS)),
                    ("N_CALLER", len(CALLERS)))),
            ("rq_wait", (("N_SLOTS", NSLOTS),))]


# ---- C
C_FRAGMENT = "rqspinlock.bpf.c"
LCB_F_SPIN = 1 << 0      # contention_begin's flags: a spinning lock (include/trace/events/lock.h)


def defines(kernel, plans):
    """The slow path's address range (a frame in it makes a failure an
    rqspinlock's) from kallsyms; the kinds come from the core's held-locks
    table (rqspinlock_kernel.kind_defines)."""
    rq = kernel.kallsyms.range_of(SLOWPATH) or (0, 0)
    return {"RQ_SLOWPATH_START": f"{rq[0]:#x}ULL", "RQ_SLOWPATH_END": f"{rq[1]:#x}ULL",
            "LCB_F_SPIN": LCB_F_SPIN, "CALLER_RES_SPIN_LOCK": CALLERS.index("res_spin_lock")}


# ---- decode
def decode(snap, cpu, lay, words, attached, latency):
    """The failures: counted here, or (without this probe) by the lock users'
    boundary probes (the helper family: rq_boundary) and the kfunc probe."""
    rq = lay.block(words, "rq")
    nk, nc = len(RQ_KINDS), len(CALLERS)
    for ei, err in enumerate(RQ_ERRNOS):
        for ki, kind in enumerate(RQ_KINDS):
            for ci, caller in enumerate(CALLERS):
                n = rq[(ei * nk + ki) * nc + ci]
                if n:
                    snap.rq_failures[(cpu, err, kind, caller)] = n
    if latency and NAME in attached:
        snap.rq_wait[cpu] = list(lay.block(words, "rq_wait"))


# ---- metric families
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


def families(snap, attached, per_cpu_latency):
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
    if NAME in attached:   # the whole bounded cube, zeros included: the first failure counts
        for key in _RQ_CUBE:
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
        wait.add([], sum_slots(list(snap.rq_wait.values())))
    views = [view_family(snap), unseen_family(snap, cube)] if NAME in attached else []
    return [rq, rq_cpu] + views + ([wait] if snap.rq_wait else [])


def _attached(snap):
    return {p.name: (p.attached, p.mode) for p in snap.probes}


def unseen_family(snap, cube):
    """lstrace_rqspinlock_unseen_failures_total: per lock user with no boundary
    probe attached, the failures only lock:contention_end counted."""
    f = Family("lstrace_rqspinlock_unseen_failures", "counter",
               "rqspinlock failures of a lock user with no boundary probe attached (view "
               "partial: --probes +maps adds the hash maps'), counted only at "
               "lock:contention_end: a lower bound, its pending-path failures and (6.19+) AA "
               "found before queueing reach no probe.", ["lock_user"])
    for user in lock_users.unseen_users(_attached(snap)):
        f.add([user], sum(n for (_e, _k, c), n in cube.items() if c == user))
    return f


def view_family(snap):
    """lstrace_rqspinlock_view_info: how much of each lock user's failures the
    counts above hold on this kernel (lstrace/probes/lock_users.py)."""
    f = Family("lstrace_rqspinlock_view_info", "gauge",
               "1 per rqspinlock lock user: view is exact (every failure, at its boundary), "
               "partial (queued slow path only, at lock:contention_end) or none; "
               "`lstrace doctor` says why.", ["lock_user", "view"])
    for user, view, _how in lock_users.views(_attached(snap), snap.kernel.get("generation", "")):
        f.add((user, view), 1)
    return f


# ---- failure events: the BPF side records one per failure, what = EVENTS_RQSPINLOCK
EVENT_REASONS = {"EDEADLK": "deadlock", "ETIMEDOUT": "timeout"}


def event_keys(name):
    return [(NAME, r) for r in EVENT_REASONS.values()]


def event_counts(snap, cpus=None):
    out = {}
    for (cpu, err, _kind, _caller), n in snap.rq_failures.items():
        if n and (cpus is None or cpu in cpus):
            key = (cpu, NAME, EVENT_REASONS.get(err, "other"))
            out[key] = out.get(key, 0) + n
    return out


# ---- top: failures count as the CPU's deadlocks / timeouts, except those a
# lock user's boundary probe counted: the helper family's row has them already
def cpu_counts(snap):
    rows = {}
    boundary = {u for u, view, _how in lock_users.views(_attached(snap), "C")
                if view == "exact" and u in ("htab", "local_storage")}
    for (cpu, err, kind, caller), n in snap.rq_failures.items():
        row = rows.setdefault(cpu, {})
        if caller not in boundary:
            key = "deadlock" if err == "EDEADLK" else "timeout"
            row[key] = row.get(key, 0) + n
            row["failures"] = row.get("failures", 0) + n
        if kind in ("AA", "ABBA", "nmi"):   # top's columns by kind
            row[kind.lower()] = row.get(kind.lower(), 0) + n
    return rows


def cpu_failures(snap):
    return [(cpu, NAME, n) for (cpu, _e, _k, _c), n in snap.rq_failures.items()]


def top_row(st, cur, delta, rate, r):
    """calls are contended waits (the wait histogram's count, --latency)."""
    r["calls_per_s"] = rate(sum(sum(v) for v in delta.rq_wait.values()))
    r["calls_total"] = sum(sum(v) for v in cur.rq_wait.values())
    r["failures_per_s"] = rate(sum(delta.rq_failures.values()))
    r["failures_total"] = sum(cur.rq_failures.values())
    r["deadlock_total"] = sum(n for k, n in cur.rq_failures.items() if k[1] == "EDEADLK")
    r["timeout_total"] = sum(n for k, n in cur.rq_failures.items() if k[1] == "ETIMEDOUT")


# (top --json key, section title, column headers)
TOP_SECTION = ("rqspinlock", "rqspinlock failures",
               ["CPU", "errno", "kind", "caller", "/s", "total"])


def top_rows(cur, delta, rate):
    rows = [{"cpu": cpu, "errno": err, "kind": kind, "caller": caller,
             "per_s": rate(delta.rq_failures.get((cpu, err, kind, caller), 0)),
             "total": n}
            for (cpu, err, kind, caller), n in cur.rq_failures.items() if n]
    rows.sort(key=lambda r: (-r["per_s"], -r["total"], r["cpu"], r["errno"]))
    return rows


def top_cells(r, num):
    return [r["cpu"], r["errno"], r["kind"], r["caller"], num(r["per_s"]), r["total"]]


# ---- hist: the slow-path wait
NO_HIST = None


def hist_what(name):
    return "rqspinlock wait, lock:contention_begin -> contention_end (queued path)"


def hist_slots(snap, name):
    return {c: snap.rq_wait.get(c) for c in snap.cpus}
