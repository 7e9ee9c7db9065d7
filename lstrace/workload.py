"""Small bpf() workloads with a known outcome, used by tests and benchmarks.

Each call returns its own ground truth: how many syscalls failed with which
errno, on which CPU.  Nothing here depends on lstrace's probes.
"""
import ctypes
import errno
import os
import struct
from collections import Counter
from contextlib import contextmanager

from . import bpfsys
from .bpfcalls import NOEXIST as BPF_NOEXIST
from .bpfsys import MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM

MAP_CREATE = bpfsys.CMD["MAP_CREATE"]
MAP_TYPE_HASH = 1


@contextmanager
def pinned(cpu):
    """Run the block on one CPU, so every syscall is attributed to it."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def create_hash_map(max_entries=16):
    fd, _ = bpfsys.bpf(MAP_CREATE, struct.pack("<IIIII", MAP_TYPE_HASH, 4, 8, max_entries, 0),
                       "BPF_MAP_CREATE")
    return fd


def _elem_op(cmd, fd, key, value=0, flags=0):
    k = ctypes.create_string_buffer(struct.pack("<I", key), 4)
    v = ctypes.create_string_buffer(struct.pack("<Q", value), 8)
    attr = struct.pack("<IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), flags)
    try:
        bpfsys.bpf(cmd, attr)
        return 0
    except bpfsys.BPFError as e:
        return e.errno


def syscall_errors(cpu, lookups_missing=100, duplicate_inserts=50):
    """On `cpu`: lookups of a missing key (ENOENT) and BPF_NOEXIST inserts of
    an existing key (EEXIST) on a hash map.  Returns Counter of
    (cmd name, errno name) -> failures, counted from the return values."""
    truth = Counter()
    fd = create_hash_map()
    try:
        with pinned(cpu):
            _elem_op(MAP_UPDATE_ELEM, fd, 1, 1, BPF_NOEXIST)      # now key 1 exists
            for _ in range(lookups_missing):
                err = _elem_op(MAP_LOOKUP_ELEM, fd, 2)
                if err:
                    truth[("MAP_LOOKUP_ELEM", errno.errorcode[err])] += 1
            for _ in range(duplicate_inserts):
                err = _elem_op(MAP_UPDATE_ELEM, fd, 1, 2, BPF_NOEXIST)
                if err:
                    truth[("MAP_UPDATE_ELEM", errno.errorcode[err])] += 1
    finally:
        os.close(fd)
    return truth
