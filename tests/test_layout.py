"""Histogram bucketing and outcome classification (no root)."""
import errno

import pytest

from lstrace import counters, layout


@pytest.mark.parametrize("ns,slot", [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3),
                                     (9, 4), (1023, 10), (1024, 10), (1025, 11)])
def test_slot_seams(ns, slot):
    # slot s holds (2^(s-1), 2^s]: a value equal to a bound lands in that bound's bucket
    assert layout.slot_of(ns) == slot
    assert ns <= layout.slot_upper_ns(slot)
    if slot:
        assert ns > layout.slot_upper_ns(slot - 1)


def test_slot_saturates():
    assert layout.slot_of(1 << 60) == layout.NSLOTS - 1


@pytest.mark.parametrize("err,outcome", [(errno.EBUSY, "busy"), (errno.EDEADLK, "deadlock"),
                                         (errno.ETIMEDOUT, "timeout"), (errno.ENOMEM, "nomem"),
                                         (errno.ENOENT, "not_found"), (errno.EEXIST, "other")])
def test_outcome_of_errno(err, outcome):
    assert layout.outcome_of_errno(err) == outcome


def test_errno_index_other():
    assert layout.SYS_ERRNOS[layout.errno_index(layout.SYS_ERRNOS, errno.ENOENT)] == "ENOENT"
    assert layout.SYS_ERRNOS[layout.errno_index(layout.SYS_ERRNOS, errno.EXDEV)] == "other"


def test_map_type_buckets():
    assert layout.map_type_bucket(29) == "task_storage"
    assert layout.map_type_bucket(32) == "cgrp_storage"
    assert layout.map_type_bucket(9) == "hash"        # LRU hash: rqspinlock buckets
    assert layout.map_type_bucket(2) == "other"       # array


def test_layout_fits_percpu_value_limit():
    from lstrace import probes
    lay = counters.Layout(len(probes.HELPERS))
    assert lay.value_size <= 32 * 1024       # PCPU_MIN_UNIT_SIZE


def test_c_struct_is_made_from_the_same_blocks():
    """struct counters in C is generated from Layout.blocks: same order, and
    every dimension it names is one of cflags' -D defines."""
    import re
    lay = counters.Layout(5)
    c = lay.c_struct()
    assert re.findall(r"u64 (\w+)", c) == [name for name, _ in lay.blocks]
    defines = {f.split("=")[0][2:] for f in lay.cflags()}
    assert set(re.findall(r"\[(\w+)\]", c)) <= defines
    assert sum(n for _, n in lay.offsets.values()) * 8 == lay.value_size


def test_event_struct_and_unpacker_agree():
    from lstrace import decode
    c = decode.c_structs()
    assert "u64 ips[%d];" % decode.STACK_DEPTH in c and "char comm[16];" in c
    assert decode.EVENT.size == 8 + 8 + 4 + 4 + 16 + 8 * decode.STACK_DEPTH
