"""Runs inside a kernel-lab guest: the map-operation probes (`--probes +maps`)
against the hash-map ground truth of `lstrace repro`.

htab-busy (before 6.15: per-CPU map_locked, -EBUSY) or htab-deadlock (6.15+:
rqspinlock buckets, -EDEADLK / -ETIMEDOUT), whichever applies here, nests an
update of a hash map inside a replace of the same element on the same CPU
(bpf/repro/htab.bpf.c) and counts every return itself.  lstrace's
`htab_update` probe (htab_map_update_elem) must count, per CPU and outcome:

  failures   exactly the nested updates' failures, by reason;
  ok         the replaces + the nested updates that succeeded + one insert per
             CPU (the first round creates the CPU's element, outside the
             case's groups).

in fentry mode (one fexit) and in kprobe mode (one kretprobe: the case runs
by BPF_PROG_TEST_RUN and tracing programs, which do not raise
bpf_prog_active, so kprobe mode sees these calls).  A call whose exit program
the kernel skipped (recursion) must be among the probe's recursion_misses:
counted + missed = truth.  One Session per mode (the map probes only: one
small compile).
"""
import json
import os
import subprocess
import sys

import pytest

from lstrace import layout, probes

CPUS = [0, 1]
FAIL = ("busy", "deadlock", "timeout")
CASE_KINDS = {"htab-busy": ("busy",), "htab-deadlock": ("deadlock", "timeout")}


def case_here():
    from lstrace.repro import CASES
    here = [n for n in CASE_KINDS if CASES[n].check() is None]
    assert len(here) == 1, {n: CASES[n].check() for n in CASE_KINDS}
    return here[0]


def seen(delta, probe, cpu):
    return {k: delta.helper.get((probe, cpu), {}).get(k, 0) for k in layout.OUTCOMES}


def exit_misses(before, after, probe):
    old = {p.name: p.recursion_misses for p in before.programs}
    return sum(p.recursion_misses - old.get(p.name, 0) for p in after.programs
               if p.role == "exit" and p.probe == probe)


def truth(r):
    """{cpu: {outcome: n}} of htab_map_update_elem from the case's own counts."""
    from lstrace.repro.cases.htab import NESTED
    out = {}
    for cpu in CPUS:
        calls = [r.groups[g][cpu] for g in ("htab_map_update_elem:outer", NESTED,
                                            "htab_map_update_elem:insert")]
        out[cpu] = {k: sum(c.get(k, 0) for c in calls) for k in layout.OUTCOMES}
    return out


@pytest.fixture(scope="module", params=["fentry", "kprobe"])
def session(request):
    from lstrace.session import Session
    with Session(mode=request.param, probes=list(probes.helpers.MAP_PROBES)) as s:
        yield s


def test_htab_update_exact(session):
    from lstrace import exporter
    from lstrace.repro import run_case
    name = case_here()
    st = {p.name: p for p in session.statuses()}
    assert st["htab_update"].attached and st["htab_update"].mode == session.mode, st
    before = session.snapshot()
    r = run_case(name, duration=2.0, cpus=CPUS)
    after = session.snapshot()
    assert r.runnable, r.reason
    assert r.affected, r.verdict
    d = after.delta(before)
    missed = exit_misses(before, after, "htab_update")
    want, lost = truth(r), 0
    for cpu in CPUS:
        got = seen(d, "htab_update", cpu)
        if not missed:
            assert got == want[cpu], (session.mode, cpu, got, want[cpu], r.verdict)
        else:
            assert all(got[k] <= want[cpu][k] for k in got), (cpu, got, want[cpu])
            lost += sum(want[cpu].values()) - sum(got.values())
        assert sum(got[k] for k in FAIL) > 0, (session.mode, cpu, got)
    assert lost == missed, (session.mode, lost, missed)
    # the per-CPU lock failures the exporter says are the same counts
    fams = {f.name: f for f in exporter.helper_families(d, False)}
    rows = dict(fams["lstrace_map_cpu_failures"].rows)
    for cpu in CPUS:
        got = seen(d, "htab_update", cpu)
        for reason in FAIL:
            assert rows.get((cpu, reason), 0) == got[reason], (cpu, reason, rows)
    info = {v[0]: v for v, _ in fams["lstrace_map_probe_info"].rows}
    assert info["htab_update"] == ("htab_update", "htab_map_update_elem", "hash"), info
    print(f"{name} on {os.uname().release}, {session.mode}: "
          + "; ".join(f"CPU {c}: {seen(d, 'htab_update', c)}" for c in CPUS)
          + f" (missed {missed}; truth {want})")


def test_doctor_lists_map_probes():
    """`doctor --json --probes +maps`: the defaults and every map probe whose
    function is in this kernel's BTF, in fentry mode (the lab allows it)."""
    from lstrace.kernel import Kernel
    out = subprocess.run([sys.executable, "-m", "lstrace", "doctor", "--json", "--probes",
                          "+maps"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rep = {p["name"]: p for p in json.loads(out.stdout)["probes"]}
    btf = Kernel().btf
    for name in probes.helpers.MAP_PROBES:
        func = probes.helpers.helper(name).func
        if btf.has_func(func):
            assert rep[name]["mode"] == "fentry", rep[name]
        else:
            assert "does not exist" in rep[name]["reason"], rep[name]
    assert rep["htab_update"]["mode"] == "fentry"
    assert set(probes.DEFAULT_NAMES) <= set(rep)
    print("doctor +maps: " + ", ".join(f"{n}={rep[n]['mode']}" for n in probes.helpers.MAP_PROBES))
