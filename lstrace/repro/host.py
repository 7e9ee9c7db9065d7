"""The running kernel and the CPUs repro may use, read through lstrace's core
(lstrace.kernel: one BTF reader, one generation decision)."""
import functools
import os
import re

from ..errors import UsageError
from ..kernel import Kernel, _parse_cpu_list


class BadArgument(UsageError, ValueError):
    """A bad case name, CPU list or case parameter (exit 2; still a ValueError
    for run_case() callers)."""


@functools.lru_cache(maxsize=1)
def kernel() -> Kernel:
    return Kernel()


def has_func(name) -> bool:
    return kernel().btf.has_func(name)


def has_var(name) -> bool:
    return kernel().btf.has_var(name)


def info() -> dict:
    """The kernel facts repro's --json reports."""
    k = kernel()
    return {"release": k.release, "generation": k.generation,
            "res_spin_lock": has_func("bpf_res_spin_lock"),
            "cgrp_storage": has_func("bpf_cgrp_storage_get"),
            "task_storage_busy": has_var("bpf_task_storage_busy"),
            "cgrp_storage_busy": has_var("bpf_cgrp_storage_busy")}


def possible_cpus() -> int:
    """Per-CPU map values hold one slot per possible CPU."""
    return len(kernel().possible_cpus)


def usable_cpus() -> list:
    return sorted(os.sched_getaffinity(0))


_CPU_LIST = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*,?\s*$")


def parse_cpus(text: str) -> list:
    """'0-2,5' -> [0, 1, 2, 5] (the kernel's cpulist syntax, parsed by the
    core's parser once checked strictly: junk and reversed ranges are
    BadArgument, never an empty or partial list)."""
    if not _CPU_LIST.match(text or ""):
        raise BadArgument(f"bad CPU list {text!r} (e.g. 0,1 or 0-3)")
    for lo, hi in re.findall(r"(\d+)\s*-\s*(\d+)", text):
        if int(lo) > int(hi):
            raise BadArgument(f"bad CPU range {lo}-{hi}")
    return sorted(set(_parse_cpu_list(text.replace(" ", ""))))
