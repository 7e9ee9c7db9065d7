"""Runs inside a kernel-lab guest (tests/lab/test_guests.py boots it):
lstrace in fentry mode and in kprobe mode against a workload's ground truth."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))   # workload_bpf beside this file

N = 500
CPU = 1


def gen_probes(generation):
    """Which functions the workload's helpers reach on each generation."""
    get = "task_storage_get_recur" if generation == "B" else "task_storage_get"
    delete = "task_storage_delete_recur" if generation == "B" else "task_storage_delete"
    return get, delete


@pytest.fixture(scope="module")
def workload():
    from workload_bpf import HelperWorkload
    w = HelperWorkload()
    yield w
    w.close()


def test_doctor_generation_and_modes():
    r = subprocess.run([sys.executable, "-m", "lstrace", "doctor", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    rel = os.uname().release
    expected = "A" if rel.startswith("6.1.") else "B" if rel.startswith("6.12") else "C"
    assert d["generation"] == expected
    modes = {p["name"]: p["mode"] for p in d["probes"]}
    assert modes["local_storage_update"] == "fentry"
    get, _ = gen_probes(expected)
    assert modes[get] == "fentry"


def test_update_prototype_matches_kernel():
    from lstrace.kernel import Kernel
    proto = Kernel().prototype("bpf_local_storage_update")
    names = [p.name for p in proto.params]
    rel = os.uname().release
    if rel.startswith(("6.1.", "6.12.")):      # swap_uptrs arrived in 6.13
        assert names == ["owner", "smap", "value", "map_flags", "gfp_flags"]
    elif rel.startswith("6."):                 # 6.13-6.19 (this host: 6.18)
        assert names == ["owner", "smap", "value", "map_flags", "swap_uptrs", "gfp_flags"]
    else:                                      # 7.x: gfp_flags gone (no sleeping allocs)
        assert names == ["owner", "smap", "value", "map_flags", "swap_uptrs"]


@pytest.mark.parametrize("latency", [False, True], ids=["counting", "latency"])
@pytest.mark.parametrize("mode", ["fentry", "kprobe"])
def test_counts_equal_ground_truth(mode, latency, workload):
    from lstrace.kernel import Kernel
    from lstrace.session import Session
    k = Kernel()
    get, delete = gen_probes(k.generation)
    with Session(probes=[get, delete, "local_storage_update"], mode=mode, latency=latency) as s:
        status = {p.name: p for p in s.statuses()}
        assert all(status[n].mode == mode for n in (get, delete, "local_storage_update")), status
        before_truth, before = workload.truth(), s.snapshot()
        workload.run(CPU, N)
        after_truth, snap = workload.truth(), s.snapshot()
    d = snap.delta(before)
    t = {f: after_truth[CPU][f] - before_truth[CPU][f] for f in after_truth[CPU]}
    assert t["get_calls"] == N and t["get_null"] == N and t["create_null"] == 0
    g = d.helper[(get, CPU)]
    assert sum(g.values()) == t["get_calls"] + t["create_calls"]
    assert g["not_found"] == t["get_null"]
    assert g["ok"] == t["create_calls"] - t["create_null"]
    assert g["busy"] == 0
    dl = d.helper[(delete, CPU)]
    assert sum(dl.values()) == t["delete_calls"] and dl["ok"] == t["delete_calls"] - t["delete_err"]
    up = d.helper[("local_storage_update", CPU)]
    assert up["ok"] == t["create_calls"] - t["create_null"]
    # --latency: the histograms count every call; counting mode has none at all
    if latency:
        assert sum(d.latency[(get, CPU)]) == sum(g.values())
    else:
        assert not d.latency and not snap.latency
