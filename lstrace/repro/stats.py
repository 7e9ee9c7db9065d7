"""Read the workloads' per-CPU `stats` array (layout in bpf/repro/repro.h)."""
import struct

from . import sys as bsys

CATS = ("calls", "ok", "busy", "deadlock", "timeout", "nomem", "not_found", "other")


def zero() -> dict:
    return {c: 0 for c in CATS}


def read_groups(map_fd, groups: dict, cpus) -> dict:
    """{group name: {cpu: {cat: n}}} for the given group keys and CPUs."""
    ncpu = bsys.possible_cpus()
    size = 8 * len(CATS)
    out = {}
    for name, g in groups.items():
        ret, raw = bsys.map_lookup(map_fd, struct.pack("<I", g), size * ncpu)
        if ret < 0:
            raise OSError(-ret, "stats lookup failed")
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
