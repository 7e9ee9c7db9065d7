"""The bpf_syscall probe (lstrace/probes/bpf_syscall.py): bpf() errors per CPU,
command, map type and errno, on this host's kernel (tracepoint mode) against the
errors the workload made itself.  Its fentry mode runs in the lab guests
(tests/guest/test_bpf_syscall.py)."""
import pytest

from lstrace import probes, workload
from lstrace.probes import bpf_syscall
from lstrace.session import Session
from support import tracepoint_snapshot


def test_public_names_kept():
    assert probes.tracepoint("bpf_syscall") is bpf_syscall.PROBE
    assert bpf_syscall.SYSCALL_ARCH["x86_64"]["func"] == "__x64_sys_bpf"
    assert [n for n, _ in bpf_syscall.blocks(len(probes.HELPERS))] == ["sys"]


def test_cpu_counts_carry_its_errors():
    s = tracepoint_snapshot(syscall_errors={(0, "MAP_UPDATE_ELEM", "hash", "EBUSY"): 3})
    assert s.cpu_counts()[0] == {"calls": 0, "busy": 0, "deadlock": 0, "timeout": 0,
                                 "failures": 0, "syscall_errors": 3}


@pytest.fixture(scope="module")
def session():
    with Session(probes=["bpf_syscall"]) as s:
        yield s


@pytest.fixture(scope="module")
def raw_session():
    """--mode kprobe: bpf_syscall on raw_tp sys_exit (probe reads), not tp_btf."""
    with Session(probes=["bpf_syscall"], mode="kprobe") as s:
        yield s


@pytest.mark.root
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
