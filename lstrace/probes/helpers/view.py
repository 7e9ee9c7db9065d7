"""The helper family in `lstrace top` (per-CPU and per-probe rows) and
`lstrace hist` (entry -> exit latency, --latency)."""
from .catalogue import helper, is_map_probe


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
