"""Read the workloads' per-CPU `stats` array (layout in bpf/repro/repro.h)."""
import os
import struct

from ..bpfcalls import map_lookup_elem
from ..errors import LstraceError
from ..layout import outcome_of_errno
from .host import possible_cpus

CATS = ("calls", "ok", "busy", "deadlock", "timeout", "nomem", "not_found", "other")


def category(err: int) -> str:
    """The CATS name of a call's result (0 or an errno number), through the
    core's one errno -> outcome table (lstrace.layout)."""
    if err == 0:
        return "ok"
    out = outcome_of_errno(err)
    return out if out in CATS else "other"


def zero() -> dict:
    return {c: 0 for c in CATS}


def read_groups(map_fd, groups: dict, cpus) -> dict:
    """{group name: {cpu: {cat: n}}} for the given group keys and CPUs."""
    ncpu = possible_cpus()
    size = 8 * len(CATS)
    out = {}
    for name, g in groups.items():
        ret, raw = map_lookup_elem(map_fd, struct.pack("<I", g), size * ncpu)
        if ret < 0:
            raise LstraceError(f"reading the workload's stats map failed: {os.strerror(-ret)}")
        out[name] = {cpu: dict(zip(CATS, struct.unpack_from(f"<{len(CATS)}Q", raw, size * cpu)))
                     for cpu in cpus}
    return out


def add(into: dict, other: dict):
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def total(per_cpu: dict) -> dict:
    t = zero()
    for counts in per_cpu.values():
        add(t, counts)
    return t
