"""The probes: one module per tracepoint probe, one for the helper family.

A probe module is the probe's whole unit; the core (plan, program, loader,
session, decode, exporter, render, hist, attribution) iterates MODULES
through this interface and names no probe:

  PROBE / HELPERS         the declaration(s); NAMES, the probe names it serves
  plan(kernel, p, mode)   fill ProbePlan p: mode (or unavailable) and reason,
                          from trial attaches (lstrace.probes.trial)
  BLIND_SPOT_TEXT, blind_spots(mode, facts)
                          what it cannot see on this kernel (lstrace.plan.blind_facts)
  blocks(nprobes)         its blocks of `struct counters` (lstrace.layout.Layout)
  C_FRAGMENT              its C in bpf/probes/ (None: in bpf/lstrace.bpf.c), appended
                          by program.build when the probe is planned
  defines(kernel, plans), glue(kernel, plans, latency, fallback)
                          -D defines and generated C for its planned probes
  attach_points(plan, compiled, latency)
                          [(kind, event, program)]: attached and detached in order
  fall_back(plan, why)    optional: after a failed attach, switch plan to another variant
                          of its mode and return True (bpf_syscall: tp_btf -> raw_tp)
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

MODULES' order is the counters' memory order and the metrics' order.  Shared
by the modules: trial.py (trial attaches), bcc.py (BCC's program names),
tracepoint.py (TracepointProbe), preemption.py (the blind spot of lstrace's
own preemptible programs).
"""
from . import (bpf_syscall, busy_sampler, helpers, preemption, rqspinlock,  # noqa: F401
               rqspinlock_kfunc)
from .bpf_syscall import SYSCALL_ARCH  # noqa: F401
from .helpers import (GROUPS, HELPERS, MAP_PROBES, RET_ERR_PTR,  # noqa: F401
                      RET_ERR_PTR_OR_NULL, RET_ERRNO, RET_PTR_OR_NULL, RET_VOID, HelperProbe,
                      helper, is_map_probe)
from .tracepoint import TracepointProbe  # noqa: F401

MODULES = (helpers, rqspinlock, rqspinlock_kfunc, bpf_syscall, busy_sampler)
TRACEPOINT_MODULES = MODULES[1:]
TRACEPOINTS = tuple(m.PROBE for m in TRACEPOINT_MODULES)

ALL_NAMES = tuple(p.name for p in HELPERS) + tuple(p.name for p in TRACEPOINTS)
# what serve, top, doctor and the API attach without --probes
DEFAULT_NAMES = tuple(p.name for p in HELPERS if not p.group) + \
    tuple(p.name for p in TRACEPOINTS)
_BY_NAME = {name: m for m in MODULES for name in m.NAMES}

__all__ = ["HELPERS", "TRACEPOINTS", "MODULES", "TRACEPOINT_MODULES", "ALL_NAMES",
           "DEFAULT_NAMES", "GROUPS", "MAP_PROBES", "SYSCALL_ARCH", "HelperProbe",
           "TracepointProbe", "helper", "is_map_probe", "tracepoint", "module_of"]


def tracepoint(name):
    for p in TRACEPOINTS:
        if p.name == name:
            return p
    raise KeyError(name)


def module_of(name, kind=None):
    """The module of a probe; a status of kind "helper" is the helper family's
    whatever its name (hand-built snapshots).  None: no such probe."""
    if kind == "helper":
        return helpers
    return _BY_NAME.get(name)


def plans_of(module, plans):
    """The available plans of `plans` that `module` serves."""
    return [p for p in plans if p.available and module_of(p.name, p.kind) is module]
