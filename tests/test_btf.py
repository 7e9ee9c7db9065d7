"""BTF prototype parsing, generation decision and generated fexit glue (no root)."""
import os
import struct

import pytest

from lstrace import btf as B
from lstrace import plan
from lstrace.probes import helpers
from lstrace.kernel import decide_generation


class BlobBuilder:
    """Builds a minimal raw BTF blob, type by type."""

    def __init__(self):
        self.types, self.strings = [], b"\0"

    def s(self, name):
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, kind, name, vlen, size_type, extra=b"", kind_flag=0):
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types.append(struct.pack("<III", self.s(name), info, size_type) + extra)
        return len(self.types)          # ids start at 1

    def blob(self):
        t = b"".join(self.types)
        hdr = struct.pack("<HBBIIIII", B.MAGIC, 1, 0, 24, 0, len(t), len(t), len(self.strings))
        return hdr + t + self.strings


def sample_btf(nargs):
    b = BlobBuilder()
    i_int = b.add(B.INT, "int", 0, 4, struct.pack("<I", 32))
    i_u64 = b.add(B.INT, "long long unsigned int", 0, 8, struct.pack("<I", 64))
    t_u64 = b.add(B.TYPEDEF, "u64", 0, i_u64)
    s_foo = b.add(B.STRUCT, "foo", 2, 16, struct.pack("<III", b.s("a"), i_int, 0)
                  + struct.pack("<III", b.s("b"), t_u64, 64))
    p_foo = b.add(B.PTR, "", 0, s_foo)
    params = [("owner", p_foo), ("flags", t_u64), ("mode", i_int), ("x", t_u64)][:nargs]
    proto = b.add(B.FUNC_PROTO, "", len(params), p_foo,
                  b"".join(struct.pack("<II", b.s(n), t) for n, t in params))
    b.add(B.FUNC, "bpf_local_storage_update", 0, proto)
    b.add(B.VAR, "bpf_task_storage_busy", 0, i_int, struct.pack("<I", 1))
    return B.BTF(b.blob())


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


class FakeKernel:
    generation = "C"

    def __init__(self, btf):
        self.btf = btf


@pytest.mark.parametrize("nargs", [2, 4])
def test_fexit_glue_follows_prototype(nargs):
    t = sample_btf(nargs)
    p = plan.ProbePlan("local_storage_update", "helper", mode="fentry",
                       func="bpf_local_storage_update",
                       proto=t.prototype("bpf_local_storage_update"))
    args = ", ".join(f"u64 a{i}" for i in range(nargs))
    # counting mode: one fexit that reads (owner, smap, value, flags) and no entry program
    glue = helpers.helper_glue(p, FakeKernel(t), create_null_busy=True, mode="fentry")
    assert "KFUNC_PROBE" not in glue
    assert f"KRETFUNC_PROBE(bpf_local_storage_update, {args}, long ret)" in glue
    want = ("a3, a0, a1, a2" if nargs == 4 else "0, a0, a1, 0")   # what the prototype has
    assert f"count_exit(ctx, 10, 2, (s64)ret, OUT_OTHER, {want}, 0, 0)" in glue
    # --latency: an entry program that only stamps the call, the same fexit with the clock
    glue = helpers.helper_glue(p, FakeKernel(t), create_null_busy=True, mode="fentry",
                               latency=True)
    assert f"KFUNC_PROBE(bpf_local_storage_update, {args})\n{{ return stamp_entry(ctx, 10); }}" \
        in glue
    assert f"KRETFUNC_PROBE(bpf_local_storage_update, {args}, long ret)" in glue
    assert f"count_exit(ctx, 10, 2, (s64)ret, OUT_OTHER, {want}, 0, 1)" in glue


@pytest.mark.parametrize("latency", [False, True])
def test_kprobe_glue_keeps_entry_only_where_needed(latency):
    """kprobe counting mode: gets keep an entry program (a kretprobe cannot see
    the flags), every other probe runs its kretprobe alone; --latency: all both."""
    t = sample_btf(4)
    for name, func, entry in (("local_storage_update", "bpf_local_storage_update", latency),
                              ("task_storage_get", "bpf_task_storage_get", True)):
        p = plan.ProbePlan(name, "helper", mode="kprobe", func=func,
                           proto=t.prototype("bpf_local_storage_update"))
        glue = helpers.helper_glue(p, FakeKernel(t), True, "kprobe", latency)
        assert (f"int lst_kp_{name}(" in glue) == entry
        assert f"int lst_krp_{name}(" in glue
        assert helpers.needs_entry(p, latency) == entry


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


@pytest.mark.parametrize("spelling", ["kfunc__{}", "kfunc__vmlinux__{}"])
def test_fentry_program_names_come_from_what_bcc_compiled(spelling):
    """BCC up to 0.30 names KFUNC_PROBE(f) kfunc__f, Debian 13's 0.31 kfunc__vmlinux__f:
    lstrace takes the name from the compiled module, and never a near miss (_recur)."""
    compiled = []
    for func in ("bpf_task_storage_get_recur", "bpf_task_storage_get"):
        compiled += [spelling.format(func), spelling.replace("kfunc", "kretfunc").format(func)]
    compiled += ["lst_kp_task_storage_get", "lst_krp_task_storage_get"]
    p = plan.ProbePlan("task_storage_get", "helper", mode="fentry", func="bpf_task_storage_get")
    assert helpers.entry_exit_names(p, compiled) == (
        spelling.format("bpf_task_storage_get"),
        spelling.replace("kfunc", "kretfunc").format("bpf_task_storage_get"))
    p.mode = "kprobe"
    assert helpers.entry_exit_names(p, compiled) == ("lst_kp_task_storage_get",
                                                     "lst_krp_task_storage_get")
    p = plan.ProbePlan("cgrp_storage_get", "helper", mode="fentry", func="bpf_cgrp_storage_get")
    with pytest.raises(LookupError, match="bpf_cgrp_storage_get"):
        helpers.entry_exit_names(p, compiled)
