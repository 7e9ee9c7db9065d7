"""Runs inside a kernel-lab guest: the hash-map ground truth of `lstrace repro`.

htab-busy (6.1 / 6.12: per-CPU map_locked) and htab-deadlock (6.15+, 7.x:
rqspinlock buckets) nest a tp_btf program on timer:hrtimer_cancel inside a
hash-map replace on the same CPU and bucket (bpf/repro/htab.bpf.c).  On the
kernel where a case applies, every replace must nest exactly one update and
that update must fail with the era's error, per CPU, counted by the BPF
programs themselves; the other case must say why it cannot run.  No test
here skips: which case applies is part of what is checked.
"""
import os

import pytest

CPUS = [0, 1]
# the era each lab kernel is in (LAB_KERNEL: 6.1 / 6.12 / 7), decided from BTF by the case
ERA = {"6.1": "htab-busy", "6.12": "htab-busy", "7": "htab-deadlock"}
KINDS = {"htab-busy": ("busy",), "htab-deadlock": ("deadlock", "timeout")}


def applies_here():
    from lstrace.repro import CASES
    return [n for n in KINDS if CASES[n].check() is None]


def test_one_era_applies():
    from lstrace.repro import CASES
    here = applies_here()
    assert len(here) == 1, {n: CASES[n].check() for n in KINDS}
    want = ERA.get(os.environ.get("LAB_KERNEL", ""))
    if want:
        assert here == [want], (os.uname().release, here)
    other = (set(KINDS) - set(here)).pop()
    assert here[0] in CASES[other].check()


@pytest.mark.parametrize("name", sorted(KINDS))
def test_htab_case(name):
    from lstrace.repro import run_case
    from lstrace.repro.cases.htab import NESTED, problems
    r = run_case(name, duration=3.0, cpus=CPUS)
    if name not in applies_here():
        assert not r.runnable and "see htab-" in r.reason, r
        return
    assert r.runnable, r.reason
    assert problems(r, KINDS[name]) == [], r.verdict
    assert r.affected, r.verdict
    for cpu in CPUS:
        n = r.groups[NESTED][cpu]
        assert n["calls"] > 0 and n["ok"] == 0, (cpu, n)
        assert n["calls"] == sum(v for k, v in n.items() if k != "calls")
    print(f"{name} on {os.uname().release}: "
          + "; ".join(f"CPU {c}: {v}" for c, v in r.groups[NESTED].items())
          + f" [{r.extra['filter']}; nested by hook {r.extra['nested_by_hook']}]")
