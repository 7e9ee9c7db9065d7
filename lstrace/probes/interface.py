"""The probe interface: what the core asks of every probe module, with the
answer of a probe that declares nothing there.

A probe module (any module of lstrace/probes/ that declares NAMES) sets only
what it has; the registry (lstrace/probes/__init__.py) answers the rest from
here.  `probe` is the module itself: the defaults that need its declarations
(PROBE, NAMES) read them from it.
"""
from . import trial

# ---- declaration
ORDER = 100            # counters' memory order and metrics' order (lower first)
GROUPS = {}            # opt-in groups: {"maps": names}, "+maps" adds them to the defaults
COUNTS = ()            # Snapshot counter fields it fills: {key: value} dicts, subtracted by delta
# top's per-CPU columns its cpu_counts fills: (key, header, counts as a failure
# [, the key whose column it follows]); JSON "<key>_per_s"
CPU_KEYS = ()
# the sources its failure events name (FailureEvent.source): its C passes
# EVENTS_<MODULE> + i (the first source's index, a core define) to record_event
EVENT_SOURCES = ()


def default_names(probe):
    """The names attached without --probes: all but the opt-in groups'."""
    grouped = {n for names in probe.GROUPS.values() for n in names}
    return tuple(n for n in probe.NAMES if n not in grouped)


def plan(probe, kernel, p, mode="auto"):
    """A tracepoint probe: available when all its events exist."""
    if trial.try_events(kernel, p, probe.PROBE.events):
        p.mode = "tracepoint"
    return p


# ---- what it cannot see (lstrace.plan.blind_facts)
BLIND_SPOT_TEXT = {}


def blind_spots(probe, mode, facts=None):
    return ()


# ---- counters and C
def blocks(probe, nprobes):
    return []


C_FRAGMENT = None      # its C in bpf/probes/, appended when the probe is planned


def defines(probe, kernel, plans):
    return {}


def glue(probe, kernel, plans, latency=False, fallback=False):
    return []


# ---- attach
MISSED_CALLS = False   # its exit program's recursion_misses are calls it missed


def attach_points(probe, plan, compiled, latency=False):
    return list(probe.PROBE.programs)


def fall_back(probe, plan, why, mode="auto"):
    """After a failed attach: switch `plan` to the next variant or mode this probe
    declares and return True, else False (the session then reports `why`)."""
    return False


# ---- reading
def decode(probe, snap, cpu, lay, words, attached, latency):
    pass


def families(probe, snap, attached, per_cpu_latency):
    return []


def event_keys(probe, name):
    """The (probe, reason) failures that leave events (lstrace.attribution)."""
    return []


def event_counts(probe, snap, cpus=None):
    return {}


# ---- top
def cpu_counts(probe, snap):
    return {}


def cpu_failures(probe, snap):
    return []


def top_row(probe, st, cur, delta, rate, r):
    """Its row in top's probe table: by default no calls (it counts other things)."""
    r["calls_per_s"] = r["calls_total"] = None


TOP_SECTION = None     # (top --json key, title, headers): a section of its own


def top_rows(probe, cur, delta, rate):
    return []


def top_cells(probe, r, num):
    return []


# ---- hist
NO_HIST = "{name} has no latency histogram"    # why `lstrace hist` has none (None: it has)


def hist_what(probe, name):
    return ""


def hist_slots(probe, snap, name):
    return {}
