"""Runs inside a kernel-lab guest: every failed bpf_res_spin_lock kfunc the
`lstrace repro --case rqspinlock` workload makes (aa, abba, timeout,
aa-queued; bpf/repro/rqspin.bpf.c counts each return itself, per CPU) is
counted by the rqspinlock_kfunc probe, exactly, per CPU x errno x kind, with
two lstrace instances side by side: one in fentry mode, one in kprobe mode.
lock:contention_end sees none of these on 7.x (AA is found before queueing);
the probe reads the kernel's stream report of each failure instead.
"""
import os
import time

import pytest

from lstrace.kallsyms import BPF_REFRESH_S

CPUS = [0, 1]
# repro kind -> lstrace kind of its EDEADLK (ETIMEDOUT is always "timeout")
KIND = {"aa": "AA", "abba": "ABBA", "aa-queued": "AA", "timeout": "AA"}
CALLER = "res_spin_lock"


def made_by_kind(r):
    """{(cpu, errno, kind): n} the workload made, and {(cpu, errno): n} of its
    setup locks (they fail only when a vCPU stalls; their kind is not known)."""
    made, setup = {}, {}
    for group, per in r.groups.items():
        _, kind, *is_setup = group.split(":")
        for cpu, v in per.items():
            for err, n in (("EDEADLK", v["deadlock"]), ("ETIMEDOUT", v["timeout"])):
                if not n:
                    continue
                if is_setup:
                    setup[(cpu, err)] = setup.get((cpu, err), 0) + n
                    continue
                key = (cpu, err, "timeout" if err == "ETIMEDOUT" else KIND[kind])
                made[key] = made.get(key, 0) + n
    return made, setup


def kfunc_counts(delta):
    return {(cpu, err, kind): n for (cpu, err, kind, caller), n in delta.rq_failures.items()
            if caller == CALLER and n}


@pytest.fixture(scope="module")
def sessions():
    from lstrace.repro import CASES
    from lstrace.session import Session
    why = CASES["rqspinlock"].check()
    if why:
        pytest.skip(f"no rqspinlock here: {why}")
    with Session(mode="fentry") as a, Session(mode="kprobe") as b:
        for s in (a, b):
            st = {x.name: x for x in s.statuses()}["rqspinlock_kfunc"]
            if not st.attached and "does not exist" in st.reason:
                pytest.skip(f"no rqspinlock here: kfunc reports: {st.reason}")
            assert st.attached, (s.mode, st.reason)
        yield a, b


def test_kfunc_failures_exact_in_both_modes_side_by_side(sessions):
    from lstrace.repro import run_case
    before = [s.snapshot() for s in sessions]
    made, setup, verdicts = {}, {}, []
    for _ in range(5):        # at least 10^4 failures, however loaded the machine is
        r = run_case("rqspinlock", duration=3, cpus=CPUS)
        verdicts.append(r.verdict)
        for acc, part in zip((made, setup), made_by_kind(r)):
            for k, n in part.items():
                acc[k] = acc.get(k, 0) + n
        if sum(made.values()) + sum(setup.values()) >= 10_000:
            break
    deltas = [s.snapshot().delta(b) for s, b in zip(sessions, before)]
    assert sum(made.values()) + sum(setup.values()) >= 10_000, verdicts
    for s, d in zip(sessions, deltas):
        got = kfunc_counts(d)
        misses = sum(p.recursion_misses for p in s.snapshot().programs
                     if p.probe == "rqspinlock_kfunc")
        assert misses == 0, (s.mode, misses)
        if not setup:
            assert got == made, (s.mode, verdicts)
        else:                   # a stalled vCPU failed a setup lock: exact per CPU x errno
            per = {}
            for (cpu, err, _kind), n in got.items():
                per[(cpu, err)] = per.get((cpu, err), 0) + n
            want = dict(setup)
            for (cpu, err, _kind), n in made.items():
                want[(cpu, err)] = want.get((cpu, err), 0) + n
            assert per == want, (s.mode, verdicts)
        print(f"rqspinlock_kfunc {s.mode} on {os.uname().release}: made {sorted(made.items())} "
              f"(setup {setup}), counted {sorted(got.items())}; "
              f"runs {len(verdicts)}")


def test_kfunc_failures_name_the_failing_program(sessions):
    """Each failure's event carries the failing program (the BPF frame on the
    report's stack, named from kallsyms while it is loaded): the repro's aa."""
    from lstrace.bpfcalls import prog_test_run
    from lstrace.repro.cases.base import load
    from lstrace.repro.cases.helper_calls import PKT
    from lstrace.workload import pinned
    s = sessions[0]
    with load("rqspin") as obj, pinned(CPUS[0]):
        for _ in range(3):
            ret, _retval = prog_test_run(obj.prog_fd("aa"), data=PKT, repeat=1)
            assert ret == 0
        # while the program is loaded: its name resolves once the [bpf] symbols are
        # re-read (at most every BPF_REFRESH_S; an earlier session's program may have
        # left its name at this address, kept for that program's late events)
        time.sleep(BPF_REFRESH_S + 0.2)
        snap = s.snapshot()
    mine = [e for e in snap.events if e.source == "rqspinlock" and e.cpu == CPUS[0]]
    assert mine and mine[-1].program == "aa", mine[-3:]
    assert mine[-1].outcome == "deadlock", mine[-1]
