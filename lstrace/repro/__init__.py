"""lstrace repro: provoke local-storage helper and rqspinlock failures on
purpose and count them exactly, per CPU, from inside the workload.

    from lstrace.repro import run_case, CASES
    r = run_case("helper-calls", cpus=[0], n=1000, nulls=400)
    r.per_cpu[0]["not_found"]   # 400 + the delete ENOENTs

run_case() returns a CaseResult (lstrace/repro/result.py); a case this
kernel or host cannot run comes back with runnable=False and a reason.
Raises NotRoot, build.ToolMissing or libbpf.LibbpfMissing before any work,
ValueError on bad arguments.
"""
import os

from . import build, libbpf, sys as _sys
from .cases import CASES
from .cases.base import NotRunnable
from .result import CaseResult

__all__ = ["run_case", "CASES", "CaseResult", "NotRoot", "applicable"]


class NotRoot(PermissionError):
    pass


def preflight():
    """Root, clang/bpftool/libbpf headers and libbpf.so.1, or a clear exception."""
    if os.geteuid() != 0:
        raise NotRoot("lstrace repro must run as root (it loads BPF programs)")
    build.check_tools()
    libbpf.lib()


def resolve_cpus(cpus):
    usable = _sys.usable_cpus()
    if cpus is None:
        return usable
    if isinstance(cpus, str):
        cpus = _sys.parse_cpus(cpus)
    cpus = sorted(set(int(c) for c in cpus))
    bad = [c for c in cpus if c not in usable]
    if bad:
        raise ValueError(f"CPU(s) {bad} not usable here (usable: {usable})")
    return cpus


def applicable():
    """{name: None if it may run here, else the reason}: BTF checks only."""
    return {name: case.check() for name, case in CASES.items()}


def run_case(name, duration=5.0, cpus=None, **params) -> CaseResult:
    if name not in CASES:
        raise ValueError(f"unknown case {name!r} (known: {', '.join(CASES)})")
    preflight()
    cpus = resolve_cpus(cpus)
    case = CASES[name]
    reason = case.check()
    if reason is None:
        try:
            return case.run(duration, cpus, **params)
        except NotRunnable as e:
            reason = str(e)
    return CaseResult(name, runnable=False, reason=reason, cpus=cpus, params=params)
