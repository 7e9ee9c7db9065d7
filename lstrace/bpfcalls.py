"""bpf() calls whose errno is the result (lstrace repro's workloads and the
tests count them): they never raise on a failed syscall but return -errno, so
a caller can count every outcome exactly.  ctypes drops the GIL around the
syscall, so threads pinned to different CPUs really run them at the same time.
"""
import ctypes
import os
import struct

from .bpfsys import MAP_DELETE_ELEM, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, PROG_TEST_RUN
from .syscalls import SYS_PIDFD_OPEN, addr, bpf_raw, syscall

ANY, NOEXIST, EXIST = 0, 1, 2          # BPF_ANY / BPF_NOEXIST / BPF_EXIST
F_TEST_RUN_ON_CPU = 1 << 0             # BPF_F_TEST_RUN_ON_CPU


def _elem(cmd, map_fd, key: bytes, value, flags=0):
    kbuf = ctypes.create_string_buffer(key, len(key))
    attr = struct.pack("<IIQQQ", map_fd, 0, addr(kbuf), addr(value), flags)  # delete: value 0
    return bpf_raw(cmd, attr)[0]


def map_update_elem(map_fd, key: bytes, value: bytes, flags=ANY) -> int:
    """BPF_MAP_UPDATE_ELEM: 0 or -errno."""
    return _elem(MAP_UPDATE_ELEM, map_fd, key, ctypes.create_string_buffer(value, len(value)),
                 flags)


def map_delete_elem(map_fd, key: bytes) -> int:
    """BPF_MAP_DELETE_ELEM: 0 or -errno."""
    return _elem(MAP_DELETE_ELEM, map_fd, key, None)


def map_lookup_elem(map_fd, key: bytes, value_size: int):
    """BPF_MAP_LOOKUP_ELEM: (0 or -errno, value bytes).  For a per-CPU map
    pass value_size rounded up to 8 bytes times the number of possible CPUs."""
    vbuf = ctypes.create_string_buffer(value_size)
    return _elem(MAP_LOOKUP_ELEM, map_fd, key, vbuf), vbuf.raw


def prog_test_run(prog_fd, data: bytes = b"", ctx: bytes = b"", repeat=0, cpu=None):
    """BPF_PROG_TEST_RUN: (0 or -errno, the program's retval as a signed int).

    repeat: 0 means once (raw_tp refuses anything else).
    cpu: pass BPF_F_TEST_RUN_ON_CPU (raw_tp only); other program types run on
    the calling thread's CPU, so their callers pin the thread instead."""
    dbuf = ctypes.create_string_buffer(data, max(len(data), 1))
    cbuf = ctypes.create_string_buffer(ctx, max(len(ctx), 1))
    flags = F_TEST_RUN_ON_CPU if cpu is not None else 0
    # prog_fd, retval, data_size_in/out, data_in/out, repeat, duration,
    # ctx_size_in/out, ctx_in/out, flags, cpu, batch_size
    attr = struct.pack("<IIIIQQIIIIQQIII", prog_fd, 0, len(data), 0,
                       addr(dbuf) if data else 0, 0, repeat, 0,
                       len(ctx), 0, addr(cbuf) if ctx else 0, 0, flags, cpu or 0, 0)
    ret, buf = bpf_raw(PROG_TEST_RUN, attr)
    if ret < 0:
        return ret, 0
    return 0, struct.unpack_from("<i", buf.raw, 4)[0]


def pidfd_open(pid: int) -> int:
    """A pidfd (the key of task-storage maps from bpf()); OSError on failure."""
    ret = syscall(SYS_PIDFD_OPEN, ctypes.c_int(pid), ctypes.c_uint(0))
    if ret < 0:
        raise OSError(-ret, f"pidfd_open: {os.strerror(-ret)}")
    return ret
