"""The helper family's counters (calls by outcome and, with --latency, a log2
histogram, per probe), their decode, and the failures that leave events."""
from ...layout import FAILURE_REASONS, NSLOTS, OUTCOMES
from .catalogue import NAMES


def blocks(nprobes):
    return [("helper", (("N_PROBES", nprobes), ("N_OUTCOMES", len(OUTCOMES)))),
            ("lat", (("N_PROBES", nprobes), ("N_SLOTS", NSLOTS)))]


# ---- decode: one CPU's counter words -> Snapshot.helper / .latency
def decode(snap, cpu, lay, words, attached, latency):
    no, ns = len(OUTCOMES), NSLOTS
    hb, lb = lay.block(words, "helper"), lay.block(words, "lat")
    for i, name in enumerate(NAMES):
        if name in attached:
            snap.helper[(name, cpu)] = dict(zip(OUTCOMES, hb[i * no:(i + 1) * no]))
            if latency:
                snap.latency[(name, cpu)] = list(lb[i * ns:(i + 1) * ns])


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


