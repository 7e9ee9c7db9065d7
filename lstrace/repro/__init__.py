"""lstrace repro: provoke local-storage helper and rqspinlock failures on
purpose and count them exactly, per CPU, from inside the workload.

    from lstrace.repro import run_case, CASES
    r = run_case("helper-calls", cpus=[0], n=1000, nulls=400)
    r.per_cpu[0]["not_found"]   # 400 + the delete ENOENTs

run_case() returns a CaseResult (lstrace/repro/result.py); a case this
kernel or host cannot run comes back with runnable=False and a reason.
Every error is an lstrace.errors.LstraceError with its exit code: NotRoot
(77), build.ToolMissing / libbpf.LibbpfMissing (69) before any work,
host.BadArgument (2, also a ValueError) on bad arguments.  The kernel is
read through the core (lstrace.kernel.Kernel), bpf() through lstrace.bpfcalls
(calls whose errno is the result) and lstrace.bpfsys.
"""
import os

from ..errors import PermissionDenied
from . import build, libbpf
from .cases import CASES
from .cases.base import NotRunnable
from .host import BadArgument, parse_cpus, usable_cpus
from .result import CaseResult

__all__ = ["run_case", "CASES", "CaseResult", "NotRoot", "applicable"]


class NotRoot(PermissionDenied):
    pass


def preflight():
    """Root, clang/bpftool/libbpf headers and libbpf.so.1, or a clear exception."""
    if os.geteuid() != 0:
        raise NotRoot("lstrace repro must run as root (it loads BPF programs)")
    build.check_tools()
    libbpf.lib()


def resolve_cpus(cpus):
    usable = usable_cpus()
    if cpus is None:
        return usable
    if isinstance(cpus, str):
        cpus = parse_cpus(cpus)
    cpus = sorted(set(int(c) for c in cpus))
    bad = [c for c in cpus if c not in usable]
    if bad:
        raise BadArgument(f"CPU(s) {bad} not usable here (usable: {usable})")
    return cpus


def applicable():
    """{name: None if it may run here, else the reason}: BTF checks only."""
    return {name: case.check() for name, case in CASES.items()}


def run_case(name, duration=5.0, cpus=None, **params) -> CaseResult:
    if name not in CASES:
        raise BadArgument(f"unknown case {name!r} (known: {', '.join(CASES)})")
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
