"""Real BPF on this host's kernel: doctor, clear errors, nothing left attached
(each probe's exact counts against the workloads' own: tests/probes/)."""
import json
import os
import time
import shutil
import subprocess

import pytest

from support import run_lstrace
from lstrace.session import Session

pytestmark = pytest.mark.root


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
                        *__import__("support").lstrace_cmd("doctor")],
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
