"""Freed heap back to the kernel.

glibc keeps freed heap (its mmap threshold grows once a big block is freed), so
a long-running daemon would hold start-up's garbage for nothing: measured, ~5 MB
after the kallsyms parse and ~2 MB after a session's start (pickled replies).
"""
import ctypes
import gc


def release(collect=False):
    """malloc_trim(0), after a full garbage collection if `collect`."""
    if collect:
        gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass          # not glibc
