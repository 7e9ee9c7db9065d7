"""What every case shares: the Case interface and loading its object."""
import errno
import struct

from ...bpfcalls import map_update_elem
from ...bpfsys import BPFError
from ...errors import LstraceError
from .. import build, libbpf
from ..host import has_func, has_var


class NotRunnable(LstraceError):
    """This kernel or host cannot run the case; str() is the reason."""


class RunFailed(LstraceError):
    """A workload call failed in a way no case provokes (exit 1, one line)."""


class Case:
    name = ""
    summary = ""
    applies = ""        # which kernels, for --list
    # what the kernel's BTF must have: ("func" or "var", name, what its absence means)
    needs = None

    def check(self):
        """None when runnable here, else the reason (cheap: BTF look-ups only)."""
        if self.needs is None:
            return None
        kind, name, why = self.needs
        if (has_func if kind == "func" else has_var)(name):
            return None
        return f"no {name} in this kernel's BTF: {why}"

    def run(self, duration, cpus, **params):
        """Only called by run_case(), after check() said the case can run."""
        raise NotImplementedError

    def made_rq(self, r):
        """{(cpu, errno, kind, lock user): n}: the rqspinlock failures a run
        made, in lstrace_rqspinlock_failures_total's terms (lstrace.layout:
        RQ_ERRNOS, RQ_KINDS, CALLERS); empty for a case that makes none."""
        return {}


def aa_made(nested, user):
    """made_rq of a case whose nested call can only fail as AA on a lock its CPU
    holds (or time out): {(cpu, errno, kind, user): n} from its per-CPU counts."""
    out = {}
    for cpu, v in nested.items():
        for err, kind, n in (("EDEADLK", "AA", v["deadlock"]),
                             ("ETIMEDOUT", "timeout", v["timeout"])):
            if n:
                out[(cpu, err, kind, user)] = n
    return out


def load(obj_name, skip=()):
    """Compile (cached) and load bpf/repro/<obj_name>.bpf.c.

    EPERM at load is what this host answers for fentry/LSM: say so plainly.
    """
    try:
        path = build.object_path(obj_name)
    except build.CompileError as e:
        # e.g. 6.1's vmlinux.h has no BPF_MAP_TYPE_CGRP_STORAGE
        errs = [line for line in str(e).splitlines() if "error:" in line]
        raise NotRunnable(f"{obj_name}.bpf.c does not build against this kernel's BTF: "
                          f"{(errs or [str(e)])[0].strip()[:200]}") from None
    try:
        return libbpf.Object(path, skip=skip)
    except BPFError as e:
        if e.errno == errno.EPERM:
            raise NotRunnable(f"loading {obj_name} was refused (EPERM): "
                              f"{libbpf.log_reason(e)}") from None
        raise NotRunnable(f"{obj_name} does not load on this kernel: "
                          f"{libbpf.log_reason(e)}") from None


def set_cfg(obj, *vals):
    """Fill struct cfg (repro.h): up to 8 u64 parameters."""
    vals = list(vals) + [0] * (8 - len(vals))
    ret = map_update_elem(obj.map_fd("cfg"), struct.pack("<I", 0), struct.pack("<8Q", *vals))
    if ret < 0:
        raise RunFailed(f"cfg update failed: {errno.errorcode.get(-ret, -ret)}")
