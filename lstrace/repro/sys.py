"""The few bpf(2) commands repro needs, called directly so each errno is exact.

ctypes drops the GIL around the syscall, so threads pinned to different CPUs
really run their test runs and map operations at the same time.
"""
import ctypes
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

SYS_BPF = 321            # x86_64
SYS_PIDFD_OPEN = 434

MAP_LOOKUP_ELEM = 1
MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
PROG_LOAD = 5
PROG_TEST_RUN = 10
PROG_GET_FD_BY_ID = 13
OBJ_GET_INFO_BY_FD = 15

CMD_NAMES = {MAP_LOOKUP_ELEM: "map_lookup_elem", MAP_UPDATE_ELEM: "map_update_elem",
             MAP_DELETE_ELEM: "map_delete_elem"}

ANY, NOEXIST, EXIST = 0, 1, 2
F_TEST_RUN_ON_CPU = 1 << 0


def bpf(cmd, attr: bytes) -> int:
    """Return the syscall's result, or -errno (never raises: callers count errnos)."""
    buf = ctypes.create_string_buffer(attr, max(len(attr), 128))
    ret = _libc.syscall(SYS_BPF, ctypes.c_long(cmd), buf, ctypes.c_uint(len(buf)))
    return -ctypes.get_errno() if ret < 0 else ret


def _elem(cmd, map_fd, key: bytes, value, flags=0):
    kbuf = ctypes.create_string_buffer(key, len(key))
    vaddr = ctypes.addressof(value) if value is not None else 0   # delete: must be 0
    attr = struct.pack("<IIQQQ", map_fd, 0, ctypes.addressof(kbuf), vaddr, flags)
    return bpf(cmd, attr)


def map_update(map_fd, key: bytes, value: bytes, flags=ANY) -> int:
    return _elem(MAP_UPDATE_ELEM, map_fd, key, ctypes.create_string_buffer(value, len(value)), flags)


def map_delete(map_fd, key: bytes) -> int:
    return _elem(MAP_DELETE_ELEM, map_fd, key, None)


def map_lookup(map_fd, key: bytes, value_size: int):
    """(ret, bytes): value bytes when ret == 0."""
    vbuf = ctypes.create_string_buffer(value_size)
    ret = _elem(MAP_LOOKUP_ELEM, map_fd, key, vbuf)
    return ret, vbuf.raw


def test_run(prog_fd, data: bytes = b"", ctx: bytes = b"", repeat=0, cpu=None):
    """BPF_PROG_TEST_RUN: (ret, retval as signed int).

    repeat: 0 means once (raw_tp refuses anything else).
    cpu: pass BPF_F_TEST_RUN_ON_CPU (raw_tp only); other types run on the
    calling thread's CPU, so their callers pin the thread instead.
    """
    dbuf = ctypes.create_string_buffer(data, max(len(data), 1))
    cbuf = ctypes.create_string_buffer(ctx, max(len(ctx), 1))
    flags = F_TEST_RUN_ON_CPU if cpu is not None else 0
    attr = struct.pack("<IIIIQQIIIIQQIII", prog_fd, 0, len(data), 0,
                       ctypes.addressof(dbuf) if data else 0, 0, repeat, 0,
                       len(ctx), 0, ctypes.addressof(cbuf) if ctx else 0, 0,
                       flags, cpu or 0, 0)
    buf = ctypes.create_string_buffer(attr, 128)
    ret = _libc.syscall(SYS_BPF, ctypes.c_long(PROG_TEST_RUN), buf, ctypes.c_uint(128))
    if ret < 0:
        return -ctypes.get_errno(), 0
    retval = struct.unpack_from("<i", buf.raw, 4)[0]
    return 0, retval


def pidfd_open(pid: int) -> int:
    ret = _libc.syscall(SYS_PIDFD_OPEN, ctypes.c_int(pid), ctypes.c_uint(0))
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"pidfd_open: {os.strerror(e)}")
    return ret


def possible_cpus() -> int:
    """Per-CPU map values hold one slot per *possible* CPU."""
    with open("/sys/devices/system/cpu/possible") as f:
        return parse_cpus(f.read().strip())[-1] + 1


def parse_cpus(text: str) -> list:
    """'0-2,5' -> [0, 1, 2, 5]; raises ValueError on junk."""
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            lo, hi = int(lo), int(hi)
            if lo > hi or lo < 0:
                raise ValueError(f"bad CPU range {part!r}")
            out.update(range(lo, hi + 1))
        else:
            n = int(part)
            if n < 0:
                raise ValueError(f"bad CPU {part!r}")
            out.add(n)
    if not out:
        raise ValueError("empty CPU list")
    return sorted(out)


def usable_cpus() -> list:
    return sorted(os.sched_getaffinity(0))


class Pinned:
    """Pin the calling thread to one CPU for a with-block, then restore."""

    def __init__(self, cpu):
        self.cpu = cpu

    def __enter__(self):
        self.old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.cpu})
        return self

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.old)


def prog_recursion_misses(prog_fd) -> int:
    """bpf_prog_info.recursion_misses (offset 208): runs the trampoline skipped."""
    info = ctypes.create_string_buffer(256)
    ret = bpf(OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", prog_fd, 256, ctypes.addressof(info)))
    if ret < 0:
        raise OSError(-ret, "BPF_OBJ_GET_INFO_BY_FD failed")
    return struct.unpack_from("<Q", info.raw, 208)[0]


def trial_fentry(btf_id: int) -> int:
    """Load 'r0 = 0; exit' as fentry on a vmlinux function: 0 or -errno.

    This host answers -EPERM; the lab guests load it. Cheaper than compiling.
    """
    insns = ctypes.create_string_buffer(struct.pack("<BBhiBBhi", 0xB7, 0, 0, 0, 0x95, 0, 0, 0))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, 26, 2, ctypes.addressof(insns), ctypes.addressof(lic))
    struct.pack_into("<I", attr, 68, 24)          # expected_attach_type = BPF_TRACE_FENTRY
    struct.pack_into("<I", attr, 108, btf_id)     # attach_btf_id
    fd = bpf(PROG_LOAD, bytes(attr))
    if fd >= 0:
        os.close(fd)
        return 0
    return fd
