"""The probe registry: every module of this package that declares NAMES is a probe.

A probe module is the probe's whole unit; the core (plan, program, loader,
session, decode, exporter, render, hist, attribution) iterates MODULES and
names no probe.  Adding a probe is adding its module here, its C fragment in
bpf/probes/ and its test in tests/probes/: no list to extend.  What a module
may declare, and the answer when it does not, is lstrace/probes/interface.py:

  PROBE / HELPERS         the declaration(s); NAMES, the probe names it serves;
                          ORDER, GROUPS, COUNTS (its Snapshot fields), CPU_KEYS,
                          EVENT_SOURCES (what its failure events name)
  plan(kernel, p, mode)   fill ProbePlan p: mode (or unavailable) and reason,
                          from trial attaches (lstrace.probes.trial)
  BLIND_SPOT_TEXT, blind_spots(mode, facts)
                          what it cannot see on this kernel (lstrace.plan.blind_facts)
  blocks(nprobes)         its blocks of `struct counters` (lstrace.counters.Layout)
  C_FRAGMENT              its C in bpf/probes/ (a name or a tuple), appended by
                          program.build when planned
  defines(kernel, plans), glue(kernel, plans, latency, fallback)
                          -D defines and generated C for its planned probes
  attach_points(plan, compiled, latency)
                          [(kind, event, program)]: attached and detached in order
  fall_back(plan, why, mode)
                          after a failed attach: the next variant or mode it declares
  MISSED_CALLS            its last program's recursion_misses are calls it missed
  decode(snap, cpu, lay, words, attached, latency)
                          one CPU's counter words -> its Snapshot fields
  families(snap, attached, per_cpu_latency)
                          its metric families (lstrace.family.Family)
  event_keys(name), event_counts(snap, cpus)
                          the (probe, reason) failures that leave events (attribution)
  cpu_counts(snap), cpu_failures(snap), top_row(st, cur, delta, rate, row),
  TOP_SECTION, top_rows(cur, delta, rate), top_cells(row, num)
                          its part of `lstrace top`
  NO_HIST, hist_what(name), hist_slots(snap, name)
                          `lstrace hist` (NO_HIST: why it has no histogram)

Modules without NAMES are shared by the probes: interface.py, trial.py (trial
attaches), bcc.py (BCC's program names), tracepoint.py (TracepointProbe),
preemption.py (the blind spot of lstrace's own preemptible programs),
lock_users.py (each rqspinlock user's view).
"""
import functools
import importlib
import itertools
import pkgutil

from . import interface


class Probe:
    """One probe module seen through the interface: what the module declares,
    else interface.py's default (a default function gets the module first)."""

    def __init__(self, module):
        self.module = module

    def __getattr__(self, attr):
        try:
            return getattr(self.module, attr)
        except AttributeError:
            pass
        if attr == "DEFAULT_NAMES":
            return interface.default_names(self)
        if attr == "NO_HIST":
            return interface.NO_HIST.format(name=self.module.NAMES[0])
        default = getattr(interface, attr)
        return functools.partial(default, self) if callable(default) else default

    def __repr__(self):
        return f"Probe({self.module.__name__})"


def _discover():
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAMES"):
            found.append(Probe(module))
    return tuple(sorted(found, key=lambda p: (p.ORDER, p.module.__name__)))


MODULES = _discover()
_BY_NAME = {name: m for m in MODULES for name in m.NAMES}

# the helper family (its probes have calls and outcomes), the tracepoint probes
HELPER_MODULE = next(m for m in MODULES if hasattr(m.module, "HELPERS"))
HELPERS = HELPER_MODULE.HELPERS
TRACEPOINT_MODULES = tuple(m for m in MODULES if m is not HELPER_MODULE)
TRACEPOINTS = tuple(m.PROBE for m in TRACEPOINT_MODULES)

ALL_NAMES = tuple(n for m in MODULES for n in m.NAMES)
# what serve, top, doctor and the API attach without --probes
DEFAULT_NAMES = tuple(n for m in MODULES for n in m.DEFAULT_NAMES)
GROUPS = {g: names for m in MODULES for g, names in m.GROUPS.items()}
COUNTS = tuple(dict.fromkeys(f for m in MODULES for f in m.COUNTS))


def _cpu_columns():
    """Every module's CPU_KEYS in the modules' order, a column declared with a
    fourth item (another key) placed right after that key's column."""
    cols = []
    for m in MODULES:
        for key, header, failure, *after in m.CPU_KEYS:
            at = next((i + 1 for i, c in enumerate(cols) if after and c[0] == after[0]),
                      len(cols))
            while after and at < len(cols) and cols[at][3] == after[0]:
                at += 1         # after the columns already placed there
            cols.insert(at, (key, header, failure, after[0] if after else None))
    return tuple(c[:3] for c in cols)


CPU_KEYS = _cpu_columns()
BLIND_SPOT_TEXT = {k: v for m in MODULES for k, v in m.BLIND_SPOT_TEXT.items()}


def short_name(module):
    return module.module.__name__.rsplit(".", 1)[1]


# failure events' `what`: an index into EVENT_SOURCES; each module's sources
# start at EVENT_BASES[its short name] (EVENTS_<NAME> in the C)
EVENT_SOURCES = tuple(s for m in MODULES for s in m.EVENT_SOURCES)
EVENT_BASES = dict(zip(map(short_name, MODULES), itertools.accumulate(
    (len(m.EVENT_SOURCES) for m in MODULES), initial=0)))


def tracepoint(name):
    for p in TRACEPOINTS:
        if p.name == name:
            return p
    raise KeyError(name)


def module_of(name, kind=None):
    """The probe of a name; a status of kind "helper" is the helper family's
    whatever its name (hand-built snapshots).  None: no such probe."""
    if kind == "helper":
        return HELPER_MODULE
    return _BY_NAME.get(name)


def plans_of(module, plans):
    """The available plans of `plans` that `module` serves."""
    return [p for p in plans if p.available and module_of(p.name, p.kind) is module]
