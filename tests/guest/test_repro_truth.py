"""Runs inside a kernel-lab guest: every helper probe lstrace attaches is
checked, per CPU and per outcome, against the ground truth `lstrace repro`'s
workloads count themselves (helper-calls, syscall-errors, task-busy).

fentry mode must equal the truth exactly.  kprobe mode must equal it exactly
where kprobes can see (BPF_PROG_TEST_RUN programs), and on the bpf() syscall
path it must show the documented blind spot: zero calls, the skipped runs as
recursion_misses of its exit programs on 6.12+ (silent on 6.1), said by
`doctor` and by the lstrace_probe_blind_spot / lstrace_probe_missed_calls
metrics.  The bpf_syscall tracepoint probe covers that path in either mode.
"""
import json
import os
import subprocess
import sys

import pytest

from lstrace import layout, probes

CPUS = [0, 1]
ROUNDS = 50
FUNC_PROBE = {p.func: p.name for p in probes.HELPERS}
SYSCALL_FUNCS = {"task_storage": "bpf_pid_task_storage_{}_elem",
                 "cgrp_storage": "bpf_cgrp_storage_{}_elem"}
ZERO = dict.fromkeys(layout.OUTCOMES, 0)


def probe_of(group, functions):
    """The lstrace probe that sees a repro group's calls, or None."""
    if ":" in group:          # "task_storage:map_update_elem", "hammer-task:map_delete_elem"
        kind, cmd = group.split(":", 1)
        kind = {"hammer-task": "task_storage", "hammer-cgrp": "cgrp_storage"}.get(kind, kind)
        if kind not in SYSCALL_FUNCS:
            return None       # e.g. the hash map rounds: no storage probe
        func = SYSCALL_FUNCS[kind].format(cmd.split("_")[1])
    else:                     # "bpf_task_storage_get": the variant the verifier picked
        func = next((f for f in functions if f in (group, group + "_recur")), None)
    return FUNC_PROBE.get(func)


def truth_by_probe(r):
    """{(probe, cpu): {outcome: n}} from a CaseResult's groups."""
    out = {}
    for group, per in r.groups.items():
        probe = probe_of(group, r.functions)
        if probe is None:
            continue
        for cpu, c in per.items():
            acc = out.setdefault((probe, cpu), dict(ZERO))
            for k in layout.OUTCOMES:
                acc[k] += c.get(k, 0)
    return out


def seen(delta, probe, cpu):
    return {k: delta.helper.get((probe, cpu), {}).get(k, 0) for k in layout.OUTCOMES}


def exit_misses(before, after):
    """{probe: runs of its exit program the kernel skipped} between two snapshots."""
    old = {p.name: p.recursion_misses for p in before.programs}
    return {p.probe: p.recursion_misses - old.get(p.name, 0)
            for p in after.programs if p.role == "exit"}


def coarse(outcomes):
    """ok / not_found / any failure: what the stress test holds exact."""
    return {"ok": outcomes["ok"], "not_found": outcomes["not_found"],
            "failed": sum(v for k, v in outcomes.items() if k not in ("ok", "not_found"))}


def assert_matches(delta, truth, misses, fold=lambda o: o):
    """Exact per CPU and outcome for every probe whose exit program the kernel
    never skipped.  The kernel skips a trampoline program that is already
    running on the CPU (an IRQ nested in it, or on preempt=full another task
    preempting it): then each call is either counted or in the probe's
    recursion_misses (lstrace_probe_missed_calls_total), none is lost."""
    lost = {}
    for (probe, cpu), want in sorted(truth.items()):
        got, want = fold(seen(delta, probe, cpu)), fold(want)
        if not misses.get(probe):
            assert got == want, (probe, cpu, got, want)
            continue
        assert all(got[k] <= want[k] for k in want), (probe, cpu, got, want)
        lost[probe] = lost.get(probe, 0) + sum(want.values()) - sum(got.values())
    for probe, n in lost.items():
        assert n == misses[probe], (probe, n, misses[probe])
    return lost


def add(acc, key, outcomes):
    a = acc.setdefault(key, dict(ZERO))
    for k, v in outcomes.items():
        a[k] += v


# counting mode (the default: fexit only in fentry mode) and --latency (entry
# programs and clocks), each in both helper modes
SESSIONS = {"fentry": ("fentry", False), "kprobe": ("kprobe", False),
            "fentry-latency": ("fentry", True), "kprobe-latency": ("kprobe", True)}


@pytest.fixture(scope="module", params=list(SESSIONS))
def session(request):
    from lstrace.session import Session
    mode, latency = SESSIONS[request.param]
    with Session(mode=mode, latency=latency) as s:
        yield s


def run_under(session, case, **params):
    """Run a repro case while lstrace watches: (CaseResult, snapshot delta, exit misses)."""
    from lstrace.repro import run_case
    before = session.snapshot()
    r = run_case(case, cpus=CPUS, **params)
    assert r.runnable, r.reason
    snap = session.snapshot()
    return r, snap.delta(before), exit_misses(before, snap), snap


def test_helper_calls_exact(session):
    """Test-run programs call get/delete n times: both modes see every call."""
    r, d, _, _ = run_under(session, "helper-calls", n=300, nulls=120, deletes=5)
    truth = truth_by_probe(r)
    assert truth, r.groups
    for (probe, cpu), want in sorted(truth.items()):
        assert seen(d, probe, cpu) == want, (session.mode, probe, cpu, r.verdict)
    # each storage kind creates its element once per CPU (one update) and
    # deletes it once (one unlink)
    kinds = len([g for g in r.groups if g.endswith("_get")])
    for cpu in CPUS:
        assert seen(d, "local_storage_update", cpu) == dict(ZERO, ok=kinds), cpu
        assert seen(d, "selem_unlink", cpu) == dict(ZERO, ok=kinds), cpu
    print(f"{session.mode}{' --latency' if session.latency else ''}: {len(truth)} (probe, cpu) "
          f"pairs exact: {r.verdict}")


def test_syscall_path(session):
    """bpf() map commands on task/cgroup storage: fentry sees each one, kprobe
    none (bpf_prog_active), and says so."""
    r, d, misses, snap = run_under(session, "syscall-errors", rounds=ROUNDS)
    truth = truth_by_probe(r)
    assert {p for p, _ in truth} >= {"task_storage_syscall_update", "task_storage_syscall_lookup",
                                      "task_storage_syscall_delete"}
    # every update command reaches bpf_local_storage_update with the same
    # result; every successful delete unlinks one element
    updates = {}
    for (probe, cpu), want in truth.items():
        if probe.endswith("_syscall_update"):
            add(updates, ("local_storage_update", cpu), want)
        if probe.endswith("_syscall_delete"):
            add(updates, ("selem_unlink", cpu), dict(ZERO, ok=want["ok"]))
    # the tracepoint probe sees every errno either way
    for cpu in CPUS:
        for g, per in r.errnos[cpu].items():
            kind, cmd = g.split(":")
            for err, n in per.items():
                if err != "ok":
                    got = d.syscall_errors.get((cpu, cmd.upper(), kind, err), 0)
                    assert got == n, (g, cpu, err)
    rel = os.uname().release
    if session.mode == "fentry":
        for key, want in sorted({**truth, **updates}.items()):
            assert seen(d, *key) == want, (key, r.verdict)
        return
    for key, want in sorted(truth.items()):
        assert seen(d, *key) == ZERO, key              # blind: not one call seen
    for probe in {p for p, _ in truth}:         # misses are per program, all CPUs
        total = sum(sum(w.values()) for (p, _), w in truth.items() if p == probe)
        assert misses[probe] == (0 if rel.startswith("6.1.") else total), (probe, misses)
    # the metrics say it
    from lstrace.exporter import families
    fams = {f.name: f for f in families(snap)}
    blind = {s.labels["probe"] for s in fams["lstrace_probe_blind_spot"].samples
             if s.labels["blind_spot"] == "bpf_prog_active"}
    assert "task_storage_syscall_update" in blind
    missed = {s.labels["probe"]: s.value for s in fams["lstrace_probe_missed_calls"].samples}
    assert "task_storage_syscall_update" in missed
    print(f"kprobe on {rel}: syscall path misses {dict(sorted(misses.items()))}")


def test_every_probe_attaches_or_says_why_not(session):
    """A probe whose kernel function or tracepoint exists must attach (7.3's
    verifier once refused the rqspinlock program: E2BIG)."""
    absent = ("does not exist", "has no busy counters", "no rqspinlock on this kernel")
    bad = [(s.name, s.reason) for s in session.statuses()
           if not s.attached and not any(a in s.reason for a in absent)]
    assert not bad, bad


def test_rqspinlock_exact(session):
    """bpf_res_spin_lock failures that reach lock:contention_end (the repro's
    own raw_tp there counts them) equal lstrace's per-CPU count."""
    from lstrace.repro import CASES
    if CASES["rqspinlock"].check():
        pytest.skip(f"no rqspinlock here: {CASES['rqspinlock'].check()}")
    from lstrace.repro import run_case
    before = session.snapshot()
    r = run_case("rqspinlock", duration=2, cpus=CPUS)
    d = session.snapshot().delta(before)
    got = {}
    for (cpu, _err, _kind, _caller), n in d.rq_failures.items():
        got[cpu] = got.get(cpu, 0) + n
    # with the kfuncs' stream reports (6.17+) every failure counts; else what
    # contention_end sees (tests/guest/test_rqspinlock_kfunc.py: by errno and kind)
    kfunc = {st.name: st for st in session.statuses()}["rqspinlock_kfunc"].attached
    want = {c: v["deadlock"] + v["timeout"] for c, v in r.per_cpu.items()} if kfunc \
        else r.visible
    assert got == {c: n for c, n in want.items() if n}, r.verdict
    print(f"rqspinlock on {os.uname().release}: visible {r.visible}, kfunc reports {kfunc}, "
          f"lstrace {got}; {r.verdict}")


def test_doctor_states_kprobe_blind_spot():
    r = subprocess.run([sys.executable, "-m", "lstrace", "doctor", "--json", "--mode", "kprobe"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d = {p["name"]: p for p in json.loads(r.stdout)["probes"]}
    p = d["task_storage_syscall_update"]
    assert p["mode"] == "kprobe" and "bpf_prog_active" in p["blind_spots"]
    assert "6.1" in p["blind_spots"]           # says the loss is silent there


def test_busy_exact(session):
    """gen A/B: timer-IRQ get(F_CREATE)/delete nested in pinned pidfd updates
    fail on the busy counter; lstrace's busy counts equal the workload's."""
    from lstrace.repro import CASES
    if CASES["task-busy"].check():
        pytest.skip(f"not this generation: {CASES['task-busy'].check()}")
    if session.mode != "fentry":
        pytest.skip("the hammer's updates run inside bpf(): kprobe mode is blind there "
                    "(test_syscall_path)")
    r, d, misses, _ = run_under(session, "task-busy", duration=4.0, kinds=("task", "cgrp"),
                                cpu=CPUS[1], threads=2)
    truth = truth_by_probe(r)
    busy = sum(w["busy"] for w in truth.values())
    assert busy > 0, f"no busy failure provoked: {r.verdict}"
    lost = assert_matches(d, truth, misses)
    print(f"busy exact on {os.uname().release}: {busy} busy failures; reported missed {lost}; "
          f"{r.verdict}")
