"""The helper family's metric families: calls, failures by reason, per-CPU
failures, latency (--latency), and what only the map probes (--probes +maps)
have."""
from operator import itemgetter

from ...family import Family, sum_slots
from ...layout import OUTCOMES
from .catalogue import INNER_PROBES, MAP_PROBES, helper

# Per-CPU helper failures: the reasons whose cause is local to a CPU.
CPU_REASONS = ("busy", "deadlock", "timeout")
# ... and those a kernel generation can produce (zero series exported from the start)
GEN_CPU_REASONS = {"A": ("busy",), "B": ("busy",), "C": ("deadlock", "timeout")}
# per CPU, the hash-map failure reasons a bucket lock can produce (zero series);
# the lock is a blind-spot fact (lstrace.plan.htab_lock), in the snapshot's kernel
HTAB_LOCK_REASONS = {"map_locked": ("busy",), "rqspinlock": ("deadlock", "timeout"),
                     "": ("busy", "deadlock", "timeout")}

_ALL_OUTCOMES = itemgetter(*OUTCOMES)
_CPU_IDX = tuple(OUTCOMES.index(r) for r in CPU_REASONS)


def _outcome_row(counts):
    """{outcome: n} -> a tuple in OUTCOMES order (a hand-built dict may lack some)."""
    try:
        return _ALL_OUTCOMES(counts)
    except KeyError:
        return tuple(counts.get(o, 0) for o in OUTCOMES)


def _outcome_rows(helper_counts):
    """Every probe x CPU's counts as tuples in OUTCOMES order (one C-level map)."""
    try:
        return list(map(_ALL_OUTCOMES, helper_counts.values()))
    except KeyError:            # a hand-built snapshot without every outcome
        return [_outcome_row(c) for c in helper_counts.values()]


def _cpu_reason_rows(family, per_cpu, possible):
    """Rows (cpu, reason) -> n of the CPU-local reasons: the seen and the possible."""
    for cpu in sorted(per_cpu):
        sums = per_cpu[cpu]
        for r, i in zip(CPU_REASONS, _CPU_IDX):
            if sums[i] or r in possible:
                family.rows.append(((cpu, r), sums[i]))


def _latency_rows(latency, per_cpu_latency):
    if per_cpu_latency:
        return list(latency.items())
    by = {}
    for (probe, _cpu), slots in latency.items():
        by.setdefault(probe, []).append(slots)
    return [((probe,), sum_slots(by[probe])) for probe in sorted(by)]


def _helper_families(per_cpu_latency):
    return (
        Family("lstrace_helper_calls", "counter",
               "Calls of a local-storage helper (or, with --probes +maps, a hash-map "
               "operation: lstrace_map_probe_info), per CPU.", ["probe", "cpu"]),
        Family("lstrace_helper_failures", "counter",
               "Failed calls of a local-storage helper (or hash-map operation) by reason, "
               "summed over CPUs.", ["probe", "reason"]),
        Family("lstrace_helper_cpu_failures", "counter",
               "Helper calls that failed on this CPU for a CPU-local reason (busy "
               "counter held, rqspinlock deadlock or timeout), summed over the entry "
               "probes (gets, deletes, map syscalls).", ["cpu", "reason"]),
        Family("lstrace_helper_latency_seconds", "histogram",
               "Helper call latency (log2 buckets; _sum estimated from bucket midpoints).",
               ["probe", "cpu"] if per_cpu_latency else ["probe"]))


def families(snap, attached, per_cpu_latency):
    calls, fails, cpu_fails, lat = _helper_families(per_cpu_latency)
    # label values may be ints (cpu): the renderers write str() of them.  The
    # sums run on tuples in C loops; the Python loop only groups rows.
    entry_only = any(p not in INNER_PROBES and p not in MAP_PROBES for p, _ in snap.helper)
    rows = _outcome_rows(snap.helper)
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
    _cpu_reason_rows(cpu_fails, per_cpu, possible)
    lat.rows = _latency_rows(snap.latency, per_cpu_latency)
    # latency is opt-in (serve --latency): without it the family is absent, not zero
    return [calls, fails, cpu_fails] + ([lat] if snap.latency else []) + \
        map_families(snap, by_cpu_maps(snap.helper, rows))


def by_cpu_maps(helper_counts, rows):
    """cpu -> [outcome rows] of the map probes (helper's keys, rows in OUTCOMES order)."""
    out = {}
    for (probe, cpu), row in zip(helper_counts, rows):
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
    zero = [0] * len(OUTCOMES)
    per_cpu = {cpu: list(map(sum, zip(*by_cpu[cpu]))) if by_cpu.get(cpu) else zero
               for cpu in cpus}
    _cpu_reason_rows(cpu_fails, per_cpu, possible)
    return [info, cpu_fails]
