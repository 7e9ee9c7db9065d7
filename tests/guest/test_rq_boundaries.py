"""Runs inside a kernel-lab guest (6.15+: rqspinlock buckets): every
rqspinlock failure the `htab-deadlock` repro makes (a hash-map update nested
inside a replace of the same key on the same CPU: AA on the bucket lock,
counted by the workload's own BPF programs, per CPU) must appear in
lstrace_rqspinlock_failures_total and lstrace_rqspinlock_cpu_failures_total
(the exporter's own output of real snapshots), exactly, per CPU x errno x
kind, lock user htab, with `--probes +maps` (the hash-map boundary), and
with a second lstrace instance running:

  fentry   the fexit on htab_map_update_elem computes the key's bucket lock
           (jhash from BTF offsets) and finds it in this CPU's held-locks
           table: AA;
  kprobe   a kretprobe sees no key: kind unknown, still exact per CPU x errno.

Without +maps the failures are not counted (the view says partial, and on 7.x
no htab failure reaches lock:contention_end: AA is found before queueing).
The nmi kind is checked on a forced path (the lab's TCG makes no NMIs):
NMI_MASK replaced by the preemption bits, which every lock-path failure has.
"""
import os

import pytest

from lstrace import probes

CPUS = [0, 1]
MAPS = list(probes.DEFAULT_NAMES) + list(probes.helpers.MAP_PROBES)
CASE = "htab-deadlock"


def made(r):
    """{(cpu, errno, kind): n} of the nested updates (AA by construction)."""
    from lstrace.repro import CASES
    return {k[:3]: n for k, n in CASES[CASE].made_rq(r).items()}


def exported(before, after):
    """The exporter's deltas: {(errno, kind, caller): n} and {(cpu, errno): n}."""
    from scrape import samples
    a, b = samples(after)[0], samples(before)[0]
    d = {k: v - b.get(k, 0) for k, v in a.items() if v - b.get(k, 0)}
    total = {tuple(dict(lab)[x] for x in ("errno", "kind", "caller")): v
             for (name, lab), v in d.items() if name == "lstrace_rqspinlock_failures_total"}
    cpu = {(int(dict(lab)["cpu"]), dict(lab)["errno"]): v
           for (name, lab), v in d.items() if name == "lstrace_rqspinlock_cpu_failures_total"}
    return total, cpu


def run_until(n_min, sessions):
    from lstrace.repro import run_case
    before = [s.snapshot() for s in sessions]
    want, verdicts = {}, []
    for _ in range(8):             # at least n_min failures, however loaded the machine is
        r = run_case(CASE, duration=3.0, cpus=CPUS)
        assert r.runnable, r.reason
        verdicts.append(r.verdict)
        for k, n in made(r).items():
            want[k] = want.get(k, 0) + n
        if sum(want.values()) >= n_min:
            break
    return before, [s.snapshot() for s in sessions], want, verdicts


@pytest.fixture(scope="module")
def here():
    from lstrace.repro import CASES
    why = CASES[CASE].check()
    if why:
        pytest.skip(f"no rqspinlock here: {why}")


def by_cpu_errno(want):
    out = {}
    for (cpu, err, _kind), n in want.items():
        out[(cpu, err)] = out.get((cpu, err), 0) + n
    return out


def test_htab_failures_exact_with_maps_two_instances(here):
    from lstrace.session import Session
    with Session(mode="fentry", probes=MAPS) as a, Session(mode="kprobe", probes=MAPS) as b:
        for s in (a, b):
            st = {x.name: x for x in s.statuses()}
            assert st["htab_update"].attached and st["htab_update"].mode == s.mode, st
        before, after, want, verdicts = run_until(10_000, (a, b))
    assert sum(want.values()) >= 10_000, verdicts
    total_a, cpu_a = exported(before[0], after[0])
    total_b, cpu_b = exported(before[1], after[1])
    sums = {}
    for (_cpu, err, kind), n in want.items():
        sums[(err, kind, "htab")] = sums.get((err, kind, "htab"), 0) + n
    assert total_a == sums, (total_a, want, verdicts)
    assert cpu_a == by_cpu_errno(want), (cpu_a, want)
    # kprobe mode: no key at the kretprobe, the same failures with kind unknown
    unknown = {}
    for (err, kind, user), n in sums.items():
        k = (err, "timeout" if kind == "timeout" else "unknown", user)
        unknown[k] = unknown.get(k, 0) + n
    assert total_b == unknown, (total_b, want)
    assert cpu_b == by_cpu_errno(want), (cpu_b, want)
    print(f"{CASE} on {os.uname().release}: made {sorted(want.items())}; fentry counted "
          f"{sorted(total_a.items())}; kprobe counted {sorted(total_b.items())}")


def test_htab_failures_without_maps_are_not_claimed(here):
    """The default probes have no hash-map boundary: nothing is counted as
    htab but what lock:contention_end sees, and the view says partial."""
    from lstrace.probes import lock_users
    from lstrace.session import Session
    with Session(mode="fentry") as s:
        before, after, want, _ = run_until(1_000, (s,))
        attached = {p.name: (p.attached, p.mode) for p in after[0].probes}
    total, _cpu = exported(before[0], after[0])
    htab = sum(n for (_e, _k, user), n in total.items() if user == "htab")
    assert htab <= sum(want.values()), (total, want)
    views = {u: v for u, v, _how in lock_users.views(attached, "C")}
    assert views["htab"] == "partial", views
    print(f"without +maps on {os.uname().release}: made {sum(want.values())}, "
          f"counted as htab {htab} (lock:contention_end only)")


def test_nmi_kind_on_a_forced_path(here, monkeypatch):
    from lstrace.probes.rqspinlock_kernel import NMI_MASK_ENV
    from lstrace.session import Session
    monkeypatch.setenv(NMI_MASK_ENV, "0xff")       # PREEMPT_MASK: set on every lock path
    with Session(mode="fentry", probes=MAPS) as s:
        before, after, want, _ = run_until(1_000, (s,))
    total, cpu = exported(before[0], after[0])
    assert total == {("EDEADLK", "nmi", "htab"): sum(n for (_c, e, _k), n in want.items()
                                                     if e == "EDEADLK")} | (
        {("ETIMEDOUT", "nmi", "htab"): n for n in [sum(
            n for (_c, e, _k), n in want.items() if e == "ETIMEDOUT")] if n}), (total, want)
    assert cpu == by_cpu_errno(want)
