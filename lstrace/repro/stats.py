"""Read the workloads' per-CPU `stats` array (layout in bpf/repro/repro.h)."""
from . import sys as bsys

CATS = ("calls", "ok", "busy", "deadlock", "timeout", "nomem", "not_found", "other")


def zero() -> dict:
    return {c: 0 for c in CATS}


def read_groups(map_fd, groups: dict, cpus) -> dict:
    """{group name: {cpu: {cat: n}}} for the given group indexes and CPUs."""
    ncpu = bsys.possible_cpus()
    out = {}
    for name, g in groups.items():
        per = {cpu: zero() for cpu in cpus}
        for i, cat in enumerate(CATS):
            vals = bsys.percpu_u64(map_fd, g * len(CATS) + i, ncpu)
            for cpu in cpus:
                per[cpu][cat] = vals[cpu]
        out[name] = per
    return out


def add(into: dict, other: dict):
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def total(per_cpu: dict) -> dict:
    t = zero()
    for counts in per_cpu.values():
        add(t, counts)
    return t
