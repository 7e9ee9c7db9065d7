"""The helper family (lstrace/probes/helpers.py) without a kernel: its catalogue
and counter blocks, the generated fexit / kprobe glue and program names, and the
opt-in map-operation probes (--probes +maps, issue 13 item 1): the probe list,
the generated fexit, the metrics.  The real counts are checked against the
repro's own in tests/guest/test_map_probes.py (the guest half)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from btfblob import sample_btf
from lstrace import exporter, layout, plan, probes
from lstrace.errors import UsageError
from lstrace.layout import FAILURE_REASONS
from lstrace.probes import helpers
from lstrace.snapshot import ProbeStatus, Snapshot
from scrape import get, make_snap, samples, slots_with

ROOT = Path(__file__).resolve().parents[2]
MAPS = helpers.MAP_PROBES


def test_group_holds_the_hash_map_family():
    funcs = {probes.helpers.helper(n).func for n in MAPS}
    assert funcs == {"htab_map_update_elem", "htab_map_delete_elem",
                     "htab_percpu_map_update_elem", "htab_lru_map_update_elem",
                     "htab_lru_map_delete_elem", "htab_lru_percpu_map_update_elem"}
    assert all(probes.helpers.helper(n).group == "maps" and probes.helpers.helper(n).map_type for n in MAPS)
    assert not set(MAPS) & set(probes.DEFAULT_NAMES)


def test_probe_list_defaults_and_groups():
    assert plan.parse_probe_list(None) is None
    plus = plan.parse_probe_list("+maps")
    assert plus == list(probes.DEFAULT_NAMES) + list(MAPS)
    assert plan.parse_probe_list("maps") == list(MAPS)
    assert plan.parse_probe_list("rqspinlock, maps") == ["rqspinlock"] + list(MAPS)
    assert plan.parse_probe_list("htab_update") == ["htab_update"]
    assert plan.parse_probe_list("+htab_lru_delete") == list(probes.DEFAULT_NAMES) + [
        "htab_lru_delete"]
    # a '+' item keeps the others too, each once
    assert plan.parse_probe_list("+maps,htab_update,rqspinlock") == plus


@pytest.mark.parametrize("text,bad", [("+nosuch", "+nosuch"), ("maps,htab", "htab"),
                                      ("+map", "+map")])
def test_probe_list_unknown_names(text, bad):
    with pytest.raises(UsageError, match=f"unknown probe {bad.replace('+', '[+]')};") as e:
        plan.parse_probe_list(text)
    assert "groups (opt-in" in str(e.value) and "maps" in str(e.value)


@pytest.mark.parametrize("text", ["", "+", ", +"])
def test_probe_list_naming_nothing(text):
    with pytest.raises(UsageError, match="name at least one probe"):
        plan.parse_probe_list(text)


class FakeProto:
    def __init__(self, nargs, ret_size):
        self.params = [object()] * nargs
        self.ret, self.ret_size, self.returns_pointer = "long", ret_size, False


class FakeKernel:
    generation = "C"


@pytest.mark.parametrize("ret_size,decl", [(4, "int ret"), (8, "long ret")])
def test_fexit_is_one_counting_program(ret_size, decl):
    """One fexit per map op, classified from its return value (an int before 6.4,
    a long since), the helper probes' count_exit: no entry, no frame, no clock."""
    p = plan.ProbePlan("htab_update", "helper", mode="fentry", func="htab_map_update_elem",
                       proto=FakeProto(4, ret_size))
    idx = helpers.helper_index("htab_update")
    glue = helpers.helper_glue(p, FakeKernel(), True, "fentry")
    assert "KFUNC_PROBE" not in glue and "bpf_ktime_get_ns" not in glue
    assert f"KRETFUNC_PROBE(htab_map_update_elem, u64 a0, u64 a1, u64 a2, u64 a3, {decl})" \
        in glue
    # the map and key (as owner) for the bucket lock; lock user htab (rq_boundary)
    htab = layout.CALLERS.index("htab")
    assert f"count_exit(ctx, {idx}, 1, (s64)ret, OUT_OTHER, 0, a1, a0, a2, 0, 0, {htab})" in glue
    k = helpers.helper_glue(dataclass_mode(p, "kprobe"), FakeKernel(), True, "kprobe")
    assert "lst_kp_htab_update" not in k and "int lst_krp_htab_update(" in k


def dataclass_mode(p, mode):
    import dataclasses
    return dataclasses.replace(p, mode=mode)


def map_snapshot(htab_lock, outcomes):
    st = [ProbeStatus(n, "helper", "fentry", True, "", probes.helpers.helper(n).func) for n in MAPS]
    st.append(ProbeStatus("task_storage_get", "helper", "fentry", True, "",
                          "bpf_task_storage_get"))
    s = Snapshot(taken=0.0, cpus=[0, 1], kernel={"release": "x", "generation": "C",
                                                   "htab_lock": htab_lock}, probes=st)
    for cpu in s.cpus:
        for n in MAPS + ("task_storage_get",):
            s.helper[(n, cpu)] = dict.fromkeys(layout.OUTCOMES, 0)
    for (probe, cpu), counts in outcomes.items():
        s.helper[(probe, cpu)].update(counts)
    return s


def rows(snap, name):
    fams = {f.name: f for f in exporter.helper_families(snap, False)}
    return dict(fams[name].rows) if name in fams else None


def test_map_cpu_failures_apart_from_local_storage():
    """A hash-map deadlock counts in lstrace_map_cpu_failures_total, not in the
    local-storage per-CPU family; calls and failures by probe carry it as any helper."""
    s = map_snapshot("rqspinlock", {("htab_update", 1): {"ok": 5, "deadlock": 3},
                                    ("htab_lru_delete", 1): {"timeout": 2},
                                    ("task_storage_get", 0): {"deadlock": 7}})
    m = rows(s, "lstrace_map_cpu_failures")
    assert m == {(0, "deadlock"): 0, (0, "timeout"): 0, (1, "deadlock"): 3,
                 (1, "timeout"): 2}
    h = rows(s, "lstrace_helper_cpu_failures")
    assert h[(1, "deadlock")] == 0 and h[(0, "deadlock")] == 7
    assert rows(s, "lstrace_helper_calls")[("htab_update", 1)] == 8
    assert rows(s, "lstrace_helper_failures")[("htab_update", "deadlock")] == 3
    info = rows(s, "lstrace_map_probe_info")
    assert info[("htab_update", "htab_map_update_elem", "hash")] == 1
    assert info[("htab_lru_percpu_update", "htab_lru_percpu_map_update_elem",
                 "lru_percpu_hash")] == 1


@pytest.mark.parametrize("lock,reasons", [("map_locked", ("busy",)),
                                          ("rqspinlock", ("deadlock", "timeout")),
                                          ("", ("busy", "deadlock", "timeout"))])
def test_map_cpu_failure_zeros_follow_the_bucket_lock(lock, reasons):
    """The first failure counts: the reasons this kernel's bucket lock can give
    exist with 0 on every CPU from attach time; a count outside them shows too."""
    m = rows(map_snapshot(lock, {("htab_update", 0): {"other": 1}}), "lstrace_map_cpu_failures")
    assert m == {(c, r): 0 for c in (0, 1) for r in reasons}
    m = rows(map_snapshot("map_locked", {("htab_update", 1): {"deadlock": 4}}),
             "lstrace_map_cpu_failures")
    assert m[(1, "deadlock")] == 4 and (0, "deadlock") not in m


def test_no_map_families_without_map_probes():
    s = map_snapshot("rqspinlock", {})
    s.probes = [p for p in s.probes if p.name not in MAPS]
    s.helper = {k: v for k, v in s.helper.items() if k[0] not in MAPS}
    assert rows(s, "lstrace_map_cpu_failures") is None
    assert rows(s, "lstrace_map_probe_info") is None


def test_cli_unknown_probe_is_a_usage_error():
    """--probes +nosuch: exit 2 and one clear line, no traceback (before root checks)."""
    for cmd in ("doctor", "top", "serve"):
        r = subprocess.run([sys.executable, "-m", "lstrace", cmd, "--probes", "+maps,nosuch"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert "unknown probe nosuch" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="doctor's trial attaches need root")
def test_doctor_json_lists_the_map_probes():
    """doctor --json --probes +maps: the defaults and the map probes, each with a
    mode or the reason (this host forbids fentry/kprobes: unavailable, said why)."""
    import json
    r = subprocess.run([sys.executable, "-m", "lstrace", "doctor", "--json", "--probes",
                        "+maps"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode in (0, 3), r.stderr
    rep = {p["name"]: p for p in json.loads(r.stdout)["probes"]}
    assert set(probes.DEFAULT_NAMES) | set(MAPS) == set(rep)
    for n in MAPS:
        assert rep[n]["mode"] != "unavailable" or rep[n]["reason"], rep[n]
    facts = json.loads(r.stdout)["blind_spot_facts"]
    assert "htab_lock" in facts, facts


def test_top_rows_name_map_probes():
    """top: a map probe is a row of kind "map" with its calls and failures; the
    per-CPU rows sum it with the helpers."""
    from lstrace import render
    prev = map_snapshot("rqspinlock", {})
    cur = map_snapshot("rqspinlock", {("htab_update", 1): {"ok": 10, "deadlock": 4}})
    cur.taken = 2.0
    m = render.top_model(cur, prev)
    row = next(r for r in m["probes"] if r["probe"] == "htab_update")
    assert (row["kind"], row["calls_total"], row["deadlock_total"]) == ("map", 14, 4)
    assert next(r for r in m["probes"] if r["probe"] == "task_storage_get")["kind"] == "helper"
    assert m["cpus"][1]["deadlock_per_s"] == 2.0 and m["cpus"][1]["worst_probe"] == "htab_update"
    assert "htab_update" in render.top_text(m)


def test_public_names_kept():
    assert probes.HELPERS is helpers.HELPERS
    assert probes.ALL_NAMES[:len(helpers.HELPERS)] == tuple(h.name for h in helpers.HELPERS)
    assert [n for n, _ in helpers.blocks(len(helpers.HELPERS))] == ["helper", "lat"]


class BtfKernel:
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
    glue = helpers.helper_glue(p, BtfKernel(t), create_null_busy=True, mode="fentry")
    assert "KFUNC_PROBE" not in glue
    assert f"KRETFUNC_PROBE(bpf_local_storage_update, {args}, long ret)" in glue
    want = ("a3, a0, a1, a2" if nargs == 4 else "0, a0, a1, 0")   # what the prototype has
    none = len(layout.CALLERS)         # an inner probe: no rqspinlock boundary
    assert f"count_exit(ctx, 10, 2, (s64)ret, OUT_OTHER, {want}, 0, 0, {none})" in glue
    # --latency: an entry program that only stamps the call, the same fexit with the clock
    glue = helpers.helper_glue(p, BtfKernel(t), create_null_busy=True, mode="fentry",
                               latency=True)
    assert f"KFUNC_PROBE(bpf_local_storage_update, {args})\n{{ return stamp_entry(ctx, 10); }}" \
        in glue
    assert f"KRETFUNC_PROBE(bpf_local_storage_update, {args}, long ret)" in glue
    assert f"count_exit(ctx, 10, 2, (s64)ret, OUT_OTHER, {want}, 0, 1, {none})" in glue


@pytest.mark.parametrize("latency", [False, True])
def test_kprobe_glue_keeps_entry_only_where_needed(latency):
    """kprobe counting mode: gets keep an entry program (a kretprobe cannot see
    the flags), every other probe runs its kretprobe alone; --latency: all both."""
    t = sample_btf(4)
    for name, func, entry in (("local_storage_update", "bpf_local_storage_update", latency),
                              ("task_storage_get", "bpf_task_storage_get", True)):
        p = plan.ProbePlan(name, "helper", mode="kprobe", func=func,
                           proto=t.prototype("bpf_local_storage_update"))
        glue = helpers.helper_glue(p, BtfKernel(t), True, "kprobe", latency)
        assert (f"int lst_kp_{name}(" in glue) == entry
        assert f"int lst_krp_{name}(" in glue
        assert helpers.needs_entry(p, latency) == entry


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


def test_helper_metrics_and_label_sets():
    outcomes = {"ok": 90, "busy": 5, "deadlock": 1, "timeout": 2, "nomem": 0, "not_found": 2,
                "unsupported": 0, "other": 0}
    snap = make_snap(helper={("task_storage_get", 1): outcomes,
                             ("task_storage_get", 0): {"ok": 3, "busy": 1}},
                     latency={("task_storage_get", 1): slots_with([1024] * 3 + [3]),
                              ("task_storage_get", 0): slots_with([1024])})
    smp, _ = samples(snap)
    assert get(smp, "lstrace_helper_calls_total", probe="task_storage_get", cpu="1") == 100
    assert get(smp, "lstrace_helper_calls_total", probe="task_storage_get", cpu="0") == 4
    for r in FAILURE_REASONS:       # per probe, summed over CPUs
        assert get(smp, "lstrace_helper_failures_total", probe="task_storage_get",
                   reason=r) == outcomes[r] + (r == "busy")
    # per CPU: the CPU-local reasons (gen B: busy possible; deadlock/timeout because seen)
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="1", reason="busy") == 5
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="1", reason="deadlock") == 1
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="0", reason="busy") == 1
    assert ("lstrace_helper_cpu_failures_total",
            frozenset({"cpu": "0", "reason": "deadlock"}.items())) not in smp
    # latency per probe by default: both CPUs in one histogram
    assert get(smp, "lstrace_helper_latency_seconds_bucket", probe="task_storage_get",
               le="1.024e-06") == 5
    assert get(smp, "lstrace_helper_latency_seconds_bucket", probe="task_storage_get",
               le="5.12e-07") == 1
    assert get(smp, "lstrace_helper_latency_seconds_count", probe="task_storage_get") == 5
    labelsets = {(n, tuple(sorted(k for k, _ in ls))) for (n, ls) in smp}
    assert ("lstrace_helper_failures_total", ("probe", "reason")) in labelsets
    assert not any(n.startswith("lstrace_helper_latency") and "cpu" in ks for n, ks in labelsets)
    # --per-cpu-latency: one histogram per probe and CPU
    smp, _ = samples(snap, per_cpu_latency=True)
    assert get(smp, "lstrace_helper_latency_seconds_count", probe="task_storage_get",
               cpu="1") == 4
    assert get(smp, "lstrace_helper_latency_seconds_bucket", probe="task_storage_get",
               cpu="0", le="1.024e-06") == 1


def test_inner_probes_not_double_counted_per_cpu():
    """A gen C get that fails in its nested bpf_local_storage_update is one failure
    on the CPU, though both probes count it."""
    snap = make_snap(kernel={"release": "7.3", "generation": "C"},
                     helper={("task_storage_get", 0): {"ok": 5, "deadlock": 1},
                             ("local_storage_update", 0): {"ok": 2, "deadlock": 1}})
    smp, _ = samples(snap)
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="0", reason="deadlock") == 1
    assert get(smp, "lstrace_helper_failures_total", probe="local_storage_update",
               reason="deadlock") == 1
    only_inner = make_snap(helper={("local_storage_update", 0): {"ok": 2, "deadlock": 3}})
    smp, _ = samples(only_inner)
    assert get(smp, "lstrace_helper_cpu_failures_total", cpu="0", reason="deadlock") == 3
