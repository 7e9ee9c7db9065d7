"""The rqspinlock probe (lstrace/probes/rqspinlock.py): rqspinlock failures at
lock:contention_end per CPU, errno, kind and caller, on this host's kernel
against the failures the repro's own programs saw."""
import pytest

from lstrace import probes
from lstrace.probes import rqspinlock
from lstrace.session import Session
from support import tracepoint_snapshot


def test_public_names_kept():
    assert probes.tracepoint("rqspinlock") is rqspinlock.PROBE
    assert probes.tracepoint("rqspinlock").programs[0][2] == "lst_contention_begin"
    assert [n for n, _ in rqspinlock.blocks(len(probes.HELPERS))] == ["rq", "rq_wait"]


def test_cpu_counts_and_delta_carry_its_failures():
    s = tracepoint_snapshot(rq_failures={(0, "EDEADLK", "AA", "htab"): 2})
    assert s.cpu_counts()[0] == {"calls": 0, "busy": 0, "deadlock": 2, "timeout": 0,
                                 "failures": 2, "aa": 2}
    assert s.per_cpu_totals()[0] == {"calls": 0, "busy": 0, "deadlock": 2, "timeout": 0,
                                     "failures": 2}
    d = s.delta(tracepoint_snapshot(taken=0.0, kernel={}))
    assert d.rq_failures == s.rq_failures


@pytest.fixture(scope="module")
def session():
    with Session(probes=["rqspinlock"]) as s:
        yield s


@pytest.mark.root
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


@pytest.mark.root
def test_snapshot_has_every_cpu_and_programs(session):
    snap = session.snapshot()
    assert snap.cpus == session.kernel.possible_cpus
    names = {p.name for p in snap.programs}
    assert {"lst_contention_begin", "lst_contention_end"} <= names
    status = {p.name: p for p in snap.probes}
    assert status["rqspinlock"].mode == "tracepoint" and status["rqspinlock"].attached
