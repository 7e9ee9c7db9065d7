"""Raw syscalls by number, the numbers from lstrace/arch.py's one per-arch
table: None on an architecture it lacks, and then every call raises
Unavailable (never another architecture's number)."""
import ctypes

from . import arch
from .errors import Unavailable

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

_ARCH = arch.lookup()
SYS_BPF = _ARCH.nr_bpf if _ARCH else None
SYS_PERF_EVENT_OPEN = _ARCH.nr_perf_event_open if _ARCH else None
SYS_PIDFD_OPEN = _ARCH.nr_pidfd_open if _ARCH else None


def syscall(nr, *args):
    """syscall(nr, args...): its result, or -errno."""
    if nr is None:
        raise Unavailable(arch.unsupported_message(arch.machine()))
    ret = _libc.syscall(nr, *args)
    if ret < 0:
        return -ctypes.get_errno()
    return ret


def addr(buf):
    """The address of a ctypes buffer for an attr field (0 for None)."""
    return ctypes.addressof(buf) if buf is not None else 0


def bpf_raw(cmd, attr: bytes, size=128):
    """bpf(cmd, attr, size): (the result or -errno, the attr buffer after the call)."""
    buf = ctypes.create_string_buffer(attr, max(len(attr), size))
    return syscall(SYS_BPF, ctypes.c_long(cmd), buf, ctypes.c_uint(len(buf))), buf
