"""Real BPF on this host's kernel (tracepoint mode): lstrace's per-CPU
counts must equal the ground truth the workloads count themselves."""
import json
import os
import time
import shutil
import subprocess

import pytest

from conftest import run_lstrace
from lstrace import workload
from lstrace.session import Session

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def session():
    with Session(probes=["bpf_syscall", "rqspinlock"]) as s:
        yield s


@pytest.fixture(scope="module")
def raw_session():
    """--mode kprobe: bpf_syscall on raw_tp sys_exit (probe reads), not tp_btf."""
    with Session(probes=["bpf_syscall"], mode="kprobe") as s:
        yield s


@pytest.mark.parametrize("which, func", [("session", "tp_btf:sys_exit"), ("raw_session", "")])
def test_bpf_syscall_errors_exact(request, which, func):
    """Both tracepoint variants (tp_btf: typed loads; raw_tp: probe reads)."""
    session = request.getfixturevalue(which)
    status = {p.name: p for p in session.statuses()}["bpf_syscall"]
    assert (status.mode, status.func) == ("tracepoint", func), status
    cpu = max(session.kernel.online_cpus)
    before = session.snapshot()
    truth = workload.syscall_errors(cpu, lookups_missing=500, duplicate_inserts=300)
    delta = session.snapshot().delta(before)
    assert truth == {("MAP_LOOKUP_ELEM", "ENOENT"): 500, ("MAP_UPDATE_ELEM", "EEXIST"): 300}
    for (cmd, err), n in truth.items():
        assert delta.syscall_errors[(cpu, cmd, "hash", err)] == n
    # nothing of ours on the other CPUs for that map type
    others = {k: v for k, v in delta.syscall_errors.items()
              if k[0] != cpu and k[2] == "hash" and v}
    assert not others


def test_rqspinlock_failures_exact(session):
    """bpf_res_spin_lock AA failures forced onto the queued path (repro case
    rqspinlock, variant aa-queued): lstrace's per-CPU count at contention_end
    equals the failures the workload's own programs saw there."""
    repro = pytest.importorskip("lstrace.repro", reason="lstrace.repro not available")
    before = session.snapshot()
    result = repro.run_case("rqspinlock", duration=2)
    if not result.runnable:
        pytest.skip(f"rqspinlock case not runnable here: {result.reason}")
    delta = session.snapshot().delta(before)
    seen, callers = {}, set()
    for (cpu, _err, _kind, caller), n in delta.rq_failures.items():
        seen[cpu] = seen.get(cpu, 0) + n
        callers.add(caller)
    assert sum(result.visible.values()) > 0
    assert seen == {c: n for c, n in result.visible.items() if n}
    assert callers == {"res_spin_lock"}


def test_snapshot_has_every_cpu_and_programs(session):
    snap = session.snapshot()
    assert snap.cpus == session.kernel.possible_cpus
    names = {p.name for p in snap.programs}
    assert {"lst_contention_begin", "lst_contention_end"} <= names
    status = {p.name: p for p in snap.probes}
    assert status["rqspinlock"].mode == "tracepoint" and status["rqspinlock"].attached


def test_doctor_json():
    r = run_lstrace("doctor", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["generation"] == "B"          # 6.18: _recur helpers present
    modes = {p["name"]: p["mode"] for p in d["probes"]}
    assert modes["rqspinlock"] == "tracepoint" and modes["bpf_syscall"] == "tracepoint"
    upd = next(p for p in d["probes"] if p["name"] == "local_storage_update")
    assert "bpf_local_storage_update(" in upd["prototype"]
    if modes["task_storage_get_recur"] == "unavailable":
        assert "EPERM" in upd["reason"] or "kprobe" in upd["reason"]


def test_no_btf_is_a_clear_error():
    r = run_lstrace("doctor", "--btf", "/nonexistent/vmlinux")
    assert r.returncode == 69
    assert r.stderr.startswith("lstrace: no BTF at /nonexistent/vmlinux")
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv (util-linux) missing")
def test_not_root_is_a_clear_error():
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all", "--bounding-set=-all",
                        *__import__("conftest").lstrace_cmd("doctor")],
                       capture_output=True, text=True, env={**os.environ, "HOME": "/tmp"})
    assert r.returncode == 77, r.stderr
    assert "needs root" in r.stderr and "Traceback" not in r.stderr


def test_nothing_left_attached_after_session():
    from lstrace import bpfsys
    with Session(probes=["bpf_syscall"]) as s:
        ids = {p.id for p in s.program_stats()}
        assert ids and ids <= set(bpfsys.iter_prog_ids())
    # a link on a syscall tracepoint (faultable) is freed after an RCU tasks-trace grace
    # period: its program leaves the id table shortly after the fd is closed
    deadline = time.monotonic() + 10
    while ids & set(bpfsys.iter_prog_ids()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ids & set(bpfsys.iter_prog_ids())
