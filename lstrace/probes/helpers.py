"""The helper family: local-storage helpers and kernel functions, one probe each.

A *helper probe* is a kernel function probed at exit (fexit, else kretprobe;
entry programs only where needed) whose return value is classified into an
outcome (kernel-map.md §2-§4).  Adding one is one line in HELPERS.  This
module is the family's whole unit: the catalogue, the planning (trial attach
per exact function), the generated C glue (bpf/lstrace.bpf.c holds the
family's shared C: on_entry, on_exit, count_exit), the attach points, the
counter blocks and their decode, the metric families, and the top and hist
rows (the interface every probe module has: lstrace/probes/__init__.py).
"""
import dataclasses
from dataclasses import dataclass
from operator import itemgetter

from ..family import Family, sum_slots
from ..layout import FAILURE_REASONS, NSLOTS, OUTCOMES
from . import preemption, trial
from .bcc import KFUNC_PREFIXES, kfunc_name

# how a function reports failure
RET_PTR_OR_NULL = "ptr_or_null"     # BPF_CALL helper returning a pointer as u64, NULL = failed
RET_ERRNO = "errno"                 # 0 or -errno (helpers return it as u64)
RET_ERR_PTR = "err_ptr"             # pointer or ERR_PTR(-errno)
RET_ERR_PTR_OR_NULL = "err_ptr_or_null"  # pointer, NULL (not found) or ERR_PTR(-errno)
RET_VOID = "void"                   # calls only


@dataclass(frozen=True)
class HelperProbe:
    name: str          # public probe name (metric label, --probes)
    func: str          # kernel function
    ret: str           # RET_* above (the int/void variants are decided from BTF)
    role: str          # "get", "delete", "update" or "" (no nesting role)
    busy_capable: tuple = ()   # generations in which this function can fail on busy
    doc: str = ""
    group: str = ""    # "" = a default probe; else an opt-in group (--probes +GROUP)
    map_type: str = "" # maps group: the map type(s) the function serves (metric label)


HELPERS = (
    HelperProbe("task_storage_get", "bpf_task_storage_get", RET_PTR_OR_NULL, "get", ("A",),
                "bpf_task_storage_get(); gen B/C: the non-recursive variant (LSM, iterators)"),
    HelperProbe("task_storage_get_recur", "bpf_task_storage_get_recur", RET_PTR_OR_NULL,
                "get", ("B",), "bpf_task_storage_get() from tracing programs (gen B)"),
    HelperProbe("task_storage_delete", "bpf_task_storage_delete", RET_ERRNO, "delete", ("A",)),
    HelperProbe("task_storage_delete_recur", "bpf_task_storage_delete_recur", RET_ERRNO,
                "delete", ("B",)),
    HelperProbe("cgrp_storage_get", "bpf_cgrp_storage_get", RET_PTR_OR_NULL, "get", ("B",)),
    HelperProbe("cgrp_storage_delete", "bpf_cgrp_storage_delete", RET_ERRNO, "delete", ("B",)),
    HelperProbe("inode_storage_get", "bpf_inode_storage_get", RET_PTR_OR_NULL, "get"),
    HelperProbe("inode_storage_delete", "bpf_inode_storage_delete", RET_ERRNO, "delete"),
    HelperProbe("sk_storage_get", "bpf_sk_storage_get", RET_PTR_OR_NULL, "get"),
    HelperProbe("sk_storage_delete", "bpf_sk_storage_delete", RET_ERRNO, "delete"),
    HelperProbe("local_storage_update", "bpf_local_storage_update", RET_ERR_PTR, "update",
                doc="creates/updates an element; ERR_PTR(-EDEADLK/-ETIMEDOUT) on gen C"),
    HelperProbe("selem_unlink", "bpf_selem_unlink", RET_ERRNO, "",
                doc="gen C: returns the lock error; void before 7.0 (calls only)"),
    HelperProbe("selem_link_map", "bpf_selem_link_map", RET_ERRNO, "",
                doc="gen C: returns the bucket lock error; void before 7.0"),
    HelperProbe("task_storage_syscall_lookup", "bpf_pid_task_storage_lookup_elem",
                RET_ERR_PTR_OR_NULL, "", doc="bpf(BPF_MAP_LOOKUP_ELEM) on a pidfd key"),
    HelperProbe("task_storage_syscall_update", "bpf_pid_task_storage_update_elem", RET_ERRNO, ""),
    HelperProbe("task_storage_syscall_delete", "bpf_pid_task_storage_delete_elem", RET_ERRNO, ""),
    HelperProbe("cgrp_storage_syscall_lookup", "bpf_cgrp_storage_lookup_elem",
                RET_ERR_PTR_OR_NULL, ""),
    HelperProbe("cgrp_storage_syscall_update", "bpf_cgrp_storage_update_elem", RET_ERRNO, ""),
    HelperProbe("cgrp_storage_syscall_delete", "bpf_cgrp_storage_delete_elem", RET_ERRNO, ""),
    # opt-in group "maps" (--probes +maps): the hash-map family's update/delete map ops,
    # called directly from BPF programs (the verifier patches the helper call) and from
    # bpf().  Before 6.15 htab_lock_bucket() returns -EBUSY when this CPU holds the
    # map's per-CPU map_locked guard; 6.15+ buckets are rqspinlocks (-EDEADLK /
    # -ETIMEDOUT; LRU lists too from 7.2).  Only functions in BTF are planned.
    HelperProbe("htab_update", "htab_map_update_elem", RET_ERRNO, "", group="maps",
                map_type="hash", doc="hash (and hash-of-maps) update"),
    HelperProbe("htab_delete", "htab_map_delete_elem", RET_ERRNO, "", group="maps",
                map_type="hash", doc="hash and per-CPU hash delete (one function)"),
    HelperProbe("htab_percpu_update", "htab_percpu_map_update_elem", RET_ERRNO, "",
                group="maps", map_type="percpu_hash",
                doc="per-CPU hash update from BPF programs (bpf() calls the inner function)"),
    HelperProbe("htab_lru_update", "htab_lru_map_update_elem", RET_ERRNO, "", group="maps",
                map_type="lru_hash"),
    HelperProbe("htab_lru_delete", "htab_lru_map_delete_elem", RET_ERRNO, "", group="maps",
                map_type="lru_hash", doc="LRU and LRU per-CPU hash delete (one function)"),
    HelperProbe("htab_lru_percpu_update", "htab_lru_percpu_map_update_elem", RET_ERRNO, "",
                group="maps", map_type="lru_percpu_hash",
                doc="LRU per-CPU hash update from BPF programs (bpf() calls the inner function)"),
)


NAMES = tuple(p.name for p in HELPERS)
ORDER = 10
COUNTS = ("helper", "latency")
# top's per-CPU row (cpu_counts): (key, header, counts as a failure)
CPU_KEYS = (("calls", "calls/s", False), ("busy", "busy/s", False),
            ("deadlock", "deadlock/s", False), ("timeout", "timeout/s", False),
            ("failures", "fail/s", True))
# opt-in groups: --probes +GROUP adds them to the defaults, GROUP alone names them
GROUPS = {"maps": tuple(p.name for p in HELPERS if p.group == "maps")}
MAP_PROBES = GROUPS["maps"]


def is_map_probe(name):
    return name in MAP_PROBES


def helper(name):
    for p in HELPERS:
        if p.name == name:
            return p
    raise KeyError(name)


def helper_index(name):
    return NAMES.index(name)


# ---- planning: the first mode whose trial attach works on this exact function
def plan(kernel, p, mode="auto"):
    """Fill ProbePlan `p` (name, func set) for `mode`: auto | fentry | kprobe."""
    p.proto = kernel.prototype(p.func)
    if p.proto is None:
        p.reason = f"{p.func} does not exist on this kernel"
        return p
    order = ("fentry", "kprobe") if mode == "auto" else (mode,)
    for m in order:
        if m == "fentry":
            why = trial.try_fentry(kernel, p.func)
        elif m == "kprobe":
            why = trial.try_kprobe(p.func)
        else:
            why = f"{m} mode does not apply to function probes"
        if why is None:
            p.mode = m
            return p
        p.tried[m] = why
    p.reason = "; ".join(f"{m}: {w}" if not w.startswith(m) else w for m, w in p.tried.items())
    return p


# ---- blind spots (kprobe mode: trace_call_bpf, kernel/trace/bpf_trace.c); in
# fentry mode what the kernel skips is counted (recursion_misses)
BLIND_SPOT_TEXT = {
    "bpf_prog_active": (
        "calls made while bpf_prog_active is raised on the CPU: inside bpf() map syscalls "
        "and from kprobe, perf_event and (non-syscall) tracepoint BPF programs (counted as "
        "recursion_misses since 6.7; measured: 6.12 counts them, 6.1 lost them silently)"),
    "syscall_tracepoint_programs": (
        "calls from BPF programs on syscalls:* tracepoints: this kernel runs them through "
        "trace_call_bpf under bpf_prog_active (no trace_call_bpf_faultable; measured on "
        "6.12: all 2,000 gets of such a program missed; 7.3 saw all 2,000)"),
    "uncounted_misses": (
        "the calls it skips are not counted anywhere (bpf_get_kprobe_info has no 'missed': "
        "before 6.7), so lstrace_probe_missed_calls_total stays 0 (measured on 6.1)"),
}


def blind_spots(mode, facts=None):
    """Keys of what a helper probe in `mode` cannot see; facts None (unknown
    kernel): every blind spot the mode can have."""
    if mode == "fentry":            # its fexit program runs preemptible
        return preemption.keys(facts)
    if mode != "kprobe":
        return ()
    if facts is None:
        return tuple(BLIND_SPOT_TEXT)
    return tuple(k for k, on in (("bpf_prog_active", True),
                                 ("syscall_tracepoint_programs", not facts.syscall_tp_faultable),
                                 ("uncounted_misses", not facts.kprobe_misses_counted))
                 if on)


# ---- counters: calls by outcome, and (--latency) a log2 histogram, per probe
def blocks(nprobes):
    return [("helper", (("N_PROBES", nprobes), ("N_OUTCOMES", len(OUTCOMES)))),
            ("lat", (("N_PROBES", nprobes), ("N_SLOTS", NSLOTS)))]


# ---- C: the family's shared code is in bpf/lstrace.bpf.c; each probe gets glue
C_FRAGMENT = None
RET_KIND_CODE = {RET_PTR_OR_NULL: 0, RET_ERRNO: 1, RET_ERR_PTR: 2, RET_ERR_PTR_OR_NULL: 3,
                 RET_VOID: 4}
ROLE_CODE = {"": 0, "get": 1, "delete": 2, "update": 3}


def defines(kernel, plans):
    return {}       # the family's defines are the core's (program.defines)


def _ret_decl(proto):
    if proto.ret == "void":
        return None
    return "int ret" if proto.ret_size == 4 and not proto.returns_pointer else "long ret"


def _ret_kind(hp, proto):
    return RET_VOID if proto.ret == "void" else hp.ret


def _lookup_busy_var(hp, kernel):
    """The counter whose being held makes a *lookup* (get without F_CREATE)
    fail: only generation A's bpf_task_storage_get returns NULL before
    looking up.  Generation B's _recur and cgroup gets still look up while
    busy (only creating needs the counter), so their NULL lookups are absent."""
    return "BUSY_TASK" if kernel.generation == "A" and hp.name == "task_storage_get" else "0"


def needs_entry(plan, latency):
    """A helper probe runs an entry program only where it needs one: for the
    latency clock, or (kprobe mode) for the arguments a kretprobe cannot see."""
    return latency or (plan.mode == "kprobe" and helper(plan.name).role == "get")


def helper_glue(plan, kernel, create_null_busy, mode, latency=False):
    """C text of the programs of one helper probe in `mode` (fentry or kprobe).

    Counting (the default): fentry mode has one fexit program that classifies
    from its own arguments and return value (count_exit); kprobe mode keeps an
    entry program only for gets, whose kretprobe cannot see the flags, and
    reads no clock.  With `latency`: entry programs with a clock (fentry: one
    that only stamps the call; the fexit classifies as in counting mode)."""
    hp = helper(plan.name)
    proto = plan.proto
    idx, role = helper_index(hp.name), ROLE_CODE[hp.role]
    kind = RET_KIND_CODE[_ret_kind(hp, proto)]
    busy = _lookup_busy_var(hp, kernel)
    create_null = "OUT_BUSY" if create_null_busy and kernel.generation in hp.busy_capable \
        else "OUT_OTHER"
    flags_arg = 3 if hp.role in ("get", "update") else None
    ret_decl = _ret_decl(proto)
    rc = "(s64)ret" if ret_decl else "0"
    clock = int(latency)
    entry = needs_entry(dataclasses.replace(plan, mode=mode), latency)
    if mode == "fentry":
        args = ", ".join(f"u64 a{i}" for i in range(len(proto.params)))
        exit_args = ", ".join(x for x in (args, ret_decl) if x)
        def arg(i):      # the i-th argument, where the prototype has one
            return f"a{i}" if i is not None and i < len(proto.params) else "0"
        flags = arg(flags_arg)
        # gets: (map, owner, value, flags); the update: (owner, smap, value, flags)
        owner, smap = {"get": (1, 0), "update": (0, 1)}.get(hp.role, (None, None))
        owner, smap, value = arg(owner), arg(smap), arg(2 if owner is not None else None)
        stamp = (f"KFUNC_PROBE({hp.func}, {args})\n"
                 f"{{ return stamp_entry(ctx, {idx}); }}\n") if entry else ""
        return stamp + (f"KRETFUNC_PROBE({hp.func}, {exit_args})\n"
                        f"{{ return count_exit(ctx, {idx}, {kind}, {rc}, {create_null}, {flags}, "
                        f"{owner}, {smap}, {value}, {busy}, {clock}); }}\n")
    flags = f"PT_REGS_PARM{flags_arg + 1}(ctx)" if flags_arg is not None else "0"
    cast = {"int ret": "(s64)(int)PT_REGS_RC(ctx)", "long ret": "(s64)PT_REGS_RC(ctx)"}.get(
        ret_decl, "0")
    text = (f"int lst_kp_{hp.name}(struct pt_regs *ctx)\n"
            f"{{ return on_entry(ctx, {idx}, {role}, {flags}, {busy}, {clock}); }}\n") \
        if entry else ""
    return text + (f"int lst_krp_{hp.name}(struct pt_regs *ctx)\n"
                   f"{{ return on_exit(ctx, {idx}, {kind}, {cast}, {create_null}, "
                   f"{int(entry)}, {clock}); }}\n")


def glue(kernel, plans, latency=False, fallback=False):
    """C of every available helper probe in `plans`.  With `fallback`, fentry
    probes get kprobe programs too (BCC loads only what is attached): a probe
    whose fentry attach fails after a good trial can still fall back."""
    # a NULL from get(F_CREATE) is "busy" only if we would have seen the nested update
    create_null_busy = any(p.name == "local_storage_update" and p.available for p in plans)
    return [helper_glue(p, kernel, create_null_busy, mode, latency) for p in plans
            if p.available
            for mode in ((p.mode, "kprobe") if fallback and p.mode == "fentry" else (p.mode,))]


# ---- attach points: what the session attaches and detaches, entry before exit
MISSED_CALLS = True     # the exit program's recursion_misses are calls lstrace missed


def entry_exit_names(plan, compiled):
    """Function names of a helper probe's two programs in the compiled module
    (`compiled`: every function name BCC compiled, in its own spelling)."""
    hp = helper(plan.name)
    if plan.mode == "fentry":
        exit_ = kfunc_name(compiled, KFUNC_PREFIXES[1], hp.func)
        try:
            entry = kfunc_name(compiled, KFUNC_PREFIXES[0], hp.func)
        except LookupError:      # counting mode: no entry program
            entry = None
        return entry, exit_
    entry = f"lst_kp_{hp.name}"
    return (entry if entry in compiled else None), f"lst_krp_{hp.name}"


def attach_points(plan, compiled, latency=False):
    entry, exit_ = entry_exit_names(plan, compiled)
    kinds = ("kfunc", "kretfunc") if plan.mode == "fentry" else ("kprobe", "kretprobe")
    points = [(kinds[0], plan.func, entry)] if needs_entry(plan, latency) else []
    return points + [(kinds[1], plan.func, exit_)]


def fall_back(plan, why, mode="auto"):
    """An fentry that passed its trial but did not attach: the kprobe, when the
    mode is auto and a kprobe trial passes (its programs are compiled too)."""
    if plan.mode != "fentry" or mode != "auto":
        return False
    plan.tried["fentry"] = why
    kprobe_why = trial.try_kprobe(plan.func)
    if kprobe_why is not None:
        plan.tried["kprobe"] = kprobe_why
        return False
    plan.mode = "kprobe"
    return True


# ---- decode: one CPU's counter words -> Snapshot.helper / .latency
def decode(snap, cpu, lay, words, attached, latency):
    no, ns = len(OUTCOMES), NSLOTS
    hb, lb = lay.block(words, "helper"), lay.block(words, "lat")
    for i, name in enumerate(NAMES):
        if name in attached:
            snap.helper[(name, cpu)] = dict(zip(OUTCOMES, hb[i * no:(i + 1) * no]))
            if latency:
                snap.latency[(name, cpu)] = list(lb[i * ns:(i + 1) * ns])


# ---- metric families
# Per-CPU helper failures: the reasons whose cause is local to a CPU.
CPU_REASONS = ("busy", "deadlock", "timeout")
# ... and those a kernel generation can produce (zero series exported from the start)
GEN_CPU_REASONS = {"A": ("busy",), "B": ("busy",), "C": ("deadlock", "timeout")}
# Probes called from inside another probed function: their failures surface
# through the entry point (get, delete, map syscall) that called them, so the
# per-CPU sum leaves them out unless no entry point is attached.
INNER_PROBES = ("local_storage_update", "selem_unlink", "selem_link_map")

_ALL_OUTCOMES = itemgetter(*OUTCOMES)
_CPU_IDX = tuple(OUTCOMES.index(r) for r in CPU_REASONS)


def _outcome_row(counts):
    """{outcome: n} -> a tuple in OUTCOMES order (a hand-built dict may lack some)."""
    try:
        return _ALL_OUTCOMES(counts)
    except KeyError:
        return tuple(counts.get(o, 0) for o in OUTCOMES)


def families(snap, attached, per_cpu_latency):
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
        lat.rows = [((probe,), sum_slots(by[probe])) for probe in sorted(by)]
    # latency is opt-in (serve --latency): without it the family is absent, not zero
    return [calls, fails, cpu_fails] + ([lat] if snap.latency else []) + \
        map_families(snap, by_cpu_maps(snap.helper, rows))


# per CPU, the hash-map failure reasons a bucket lock can produce (zero series);
# the lock is a blind-spot fact (lstrace.plan.htab_lock), in the snapshot's kernel
HTAB_LOCK_REASONS = {"map_locked": ("busy",), "rqspinlock": ("deadlock", "timeout"),
                     "": ("busy", "deadlock", "timeout")}


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
        hp = helper(p.name)
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


# ---- failure events (lstrace.attribution): every failure but not_found leaves one
EVENT_REASONS = tuple(r for r in FAILURE_REASONS if r != "not_found")


def event_keys(name):
    return [(name, r) for r in EVENT_REASONS]


def event_counts(snap, cpus=None):
    """{(cpu, probe, reason): n} of the counters events are recorded for."""
    out = {}
    for (probe, cpu), counts in snap.helper.items():
        if cpus is None or cpu in cpus:
            for r in EVENT_REASONS:
                n = counts.get(r, 0)
                if n:
                    out[(cpu, probe, r)] = n
    return out


# ---- top
def cpu_counts(snap):
    """cpu -> the per-CPU row's counts: calls, busy/deadlock/timeout, failures,
    over the attached helper probes."""
    names = snap.helper_probes()
    rows = {}
    for cpu in snap.cpus:
        row = {"calls": 0, "busy": 0, "deadlock": 0, "timeout": 0, "failures": 0}
        for probe in names:
            counts = snap.helper.get((probe, cpu), {})
            row["calls"] += sum(counts.values())
            for r in ("busy", "deadlock", "timeout"):
                row[r] += counts.get(r, 0)
            row["failures"] += sum(n for o, n in counts.items() if o not in ("ok", "not_found"))
        rows[cpu] = row
    return rows


def cpu_failures(snap):
    """[(cpu, probe, failures)]: which probe failed most on a CPU (top's worst probe)."""
    return [(cpu, probe, snap.failures(probe, cpu)) for probe, cpu in snap.helper]


def top_row(st, cur, delta, rate, r):
    """Fill top's probe row `r` of helper probe status `st`."""
    if is_map_probe(st.name):
        r["kind"] = "map"        # --probes +maps: a hash-map operation
    def agg(snap, what=None):
        return sum((snap.failures(st.name, c, what) if what != "calls"
                    else snap.calls(st.name, c)) for c in snap.cpus)
    r["calls_per_s"] = rate(agg(delta, "calls"))
    r["failures_per_s"] = rate(agg(delta))
    r["calls_total"], r["failures_total"] = agg(cur, "calls"), agg(cur)
    for o in ("busy", "deadlock", "timeout"):
        r[f"{o}_total"] = agg(cur, o)


TOP_SECTION = None       # helper failures are in top's per-CPU and per-probe tables


# ---- hist: entry -> exit latency of the function (--latency)
NO_HIST = None


def hist_what(name):
    return f"latency of {helper(name).func}(), entry -> exit"


def hist_slots(snap, name):
    """cpu -> log2 slots (None where nothing was counted)."""
    return {c: snap.latency.get((name, c)) for c in snap.cpus}
