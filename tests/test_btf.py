"""BTF prototype parsing and the generation decision (no root; the glue the helper
family generates from a prototype: tests/probes/test_helpers.py)."""
import os

import pytest

from btfblob import sample_btf

from lstrace import btf as B
from lstrace import plan
from lstrace.kernel import decide_generation


@pytest.mark.parametrize("nargs", [2, 3, 4])
def test_prototype_from_blob(nargs):
    proto = sample_btf(nargs).prototype("bpf_local_storage_update")
    assert len(proto.params) == nargs
    assert proto.ret == "struct foo *" and proto.returns_pointer and proto.ret_size == 8
    assert proto.params[0] == B.Param("owner", "struct foo *", 8)
    assert proto.params[1] == B.Param("flags", "u64", 8)
    if nargs >= 3:
        assert proto.params[2] == B.Param("mode", "int", 4)


def test_member_offset_and_vars():
    t = sample_btf(2)
    assert t.member_offset("foo", "b") == 8
    assert t.member_offset("foo", "nope") is None
    assert t.has_var("bpf_task_storage_busy")
    assert not t.has_func("bpf_task_storage_get_recur")
    assert t.prototype("missing") is None


def test_bad_blob():
    with pytest.raises(B.BTFError):
        B.BTF(b"\0" * 32)


@pytest.mark.parametrize("funcs,vars_,gen", [
    ({"bpf_task_storage_get_recur"}, {"bpf_task_storage_busy"}, "B"),
    (set(), {"bpf_task_storage_busy"}, "A"),
    (set(), set(), "C"),
])
def test_generation_decision(funcs, vars_, gen):
    assert decide_generation(funcs.__contains__, vars_.__contains__) == gen


def test_unknown_probe_name():
    from lstrace.errors import UsageError
    with pytest.raises(UsageError, match="unknown probe nosuch"):
        plan.parse_probe_list("rqspinlock,nosuch")


@pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"), reason="no BTF on this host")
def test_running_kernel_prototypes():
    """This host's kernel (6.18, generation B): the 6-argument update."""
    t = B.BTF.load()
    proto = t.prototype("bpf_local_storage_update")
    assert [p.name for p in proto.params][:4] == ["owner", "smap", "value", "map_flags"]
    get = t.prototype("bpf_task_storage_get")
    assert len(get.params) == 5 and get.ret == "u64"    # BPF_CALL_5 wrappers
