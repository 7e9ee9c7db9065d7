"""Lock-path stress inside a kernel-lab guest with lstrace attached (fentry):
busy / deadlock workloads on every CPU at once for LSTRACE_STRESS_SECONDS
(CI: 30 s; the long run is documented in README:
`tests/lab/run 7 -- env LSTRACE_IN_LAB=1 LSTRACE_STRESS_SECONDS=600 ...`).

The guest must stay responsive (a heartbeat thread never stalls for long; no
soft lockup, RCU stall, hung task, BUG or WARNING in the kernel log) and
lstrace's per-CPU calls, ok, not_found and failure counts must still equal
the workloads' own ground truth (calls the kernel kept from lstrace's
programs must be in their recursion_misses).
"""
import os
import subprocess
import threading
import time

import pytest

from test_repro_truth import (CPUS, add, assert_matches, coarse, exit_misses, seen,
                              truth_by_probe)

SECONDS = float(os.environ.get("LSTRACE_STRESS_SECONDS", "30"))
BAD_KERNEL_LOG = ("soft lockup", "rcu_sched self-detected stall", "rcu: INFO", "RCU Stall",
                  "hung_task", "blocked for more than", "BUG:", "WARNING:", "Oops")


def kernel_log():
    return subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()


@pytest.mark.parametrize("latency", [False, True], ids=["counting", "latency"])
def test_stress_every_cpu_counts_stay_exact(latency):
    from lstrace.repro import CASES, run_case
    from lstrace.session import Session
    busy_case = CASES["task-busy"].check() is None       # generations A/B
    rq_case = CASES["rqspinlock"].check() is None         # 6.15+
    log0 = len(kernel_log())
    truth, runs, errors = {}, {"helper-calls": 0, "task-busy": 0, "rqspinlock": 0}, []
    visible = {}      # rqspinlock failures lstrace must count: those the workload saw
    made = {}         # reach contention_end, or (kfunc reports, 6.17+) every one it made
    gaps = []
    lock = threading.Lock()
    with Session(mode="fentry", latency=latency) as s:
        before = s.snapshot()
        deadline = time.monotonic() + SECONDS

        def loop(case, **params):
            try:
                while time.monotonic() < deadline:
                    r = run_case(case, **params)
                    assert r.runnable, r.reason
                    with lock:
                        for key, want in truth_by_probe(r).items():
                            add(truth, key, want)
                        for cpu, n in r.visible.items():
                            visible[cpu] = visible.get(cpu, 0) + n
                        for cpu, v in r.per_cpu.items():
                            made[cpu] = made.get(cpu, 0) + v["deadlock"] + v["timeout"]
                        runs[case] += 1
            except Exception as e:        # noqa: BLE001 - reported by the test
                errors.append(f"{case}: {e!r}")

        def heartbeat():
            last = time.monotonic()
            while time.monotonic() < deadline:
                time.sleep(0.1)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        # helper-calls on CPU 0 (task and socket storage: cgroup storage is
        # shared by every CPU of the cgroup, so it stays out of overlapping runs)
        threads = [threading.Thread(target=loop, args=("helper-calls",),
                                    kwargs=dict(cpus=[CPUS[0]], n=200, nulls=80, deletes=3,
                                                kinds=("task", "sk"))),
                   threading.Thread(target=heartbeat)]
        if busy_case:     # timer-IRQ busy failures on CPU 1, both storage types
            threads.append(threading.Thread(target=loop, args=("task-busy",), kwargs=dict(
                duration=3.0, cpus=CPUS, cpu=CPUS[1], threads=2)))   # irq: any of our threads
        if rq_case:       # bpf_res_spin_lock AA / ABBA / timeouts on every CPU
            threads.append(threading.Thread(target=loop, args=("rqspinlock",), kwargs=dict(
                duration=3.0, cpus=CPUS)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = s.snapshot()
        delta, misses = after.delta(before), exit_misses(before, after)
    assert not errors, errors
    bad = [line for line in kernel_log()[log0:] if any(w in line for w in BAD_KERNEL_LOG)]
    assert not bad, bad
    assert max(gaps) < 5.0, f"heartbeat stalled {max(gaps):.1f} s"
    # calls, ok, not_found and failures exact; which failure reason is only
    # reported: under this load a few busy NULLs came out as "other" (2 of
    # 932 on one CPU in a 60 s run on 6.12; cause not found yet)
    lost = assert_matches(delta, truth, misses, fold=coarse)
    reasons = {key: (seen(delta, *key), want) for key, want in truth.items()
               if not misses.get(key[0]) and seen(delta, *key) != want}
    print(f"failure reasons that differ: {reasons or 'none'}")
    rq = {}
    for (cpu, _err, _kind, _caller), n in delta.rq_failures.items():
        rq[cpu] = rq.get(cpu, 0) + n
    kfunc = {st.name: st for st in s.statuses()}["rqspinlock_kfunc"].attached
    want = made if kfunc else visible
    assert rq == {c: n for c, n in want.items() if n}, (rq, want, kfunc)
    busy = sum(w["busy"] for w in truth.values())
    print(f"stress {SECONDS:.0f} s on {os.uname().release}{' --latency' if latency else ''}: "
          f"runs {runs}, "
          f"{len(truth)} (probe, cpu) pairs exact, {busy} busy failures, rqspinlock {rq}, "
          f"reported missed {lost}, "
          f"max heartbeat gap {max(gaps) * 1000:.0f} ms, kernel log clean")


# every repro case whose rqspinlock failures it counts itself (Case.made_rq);
# recursion stays out: its nested get's NULL hides the errno
STRESS_CASES = ("helper-calls", "syscall-errors", "rqspinlock", "task-busy", "htab-busy",
                "htab-deadlock", "storage-deadlock")


def test_stress_every_case_two_instances():
    """Every repro case that applies here, one after another for
    LSTRACE_STRESS_SECONDS, with two lstrace instances (fentry, +maps) attached
    to the same functions: the kernel log stays clean, the guest responsive,
    and both instances' lstrace_rqspinlock_failures_total equal what the cases
    made, per CPU x errno x lock user (x kind, unless a set-up lock of the
    rqspinlock case failed: its kind is nobody's to know)."""
    from lstrace import probes
    from lstrace.repro import CASES, run_case
    from lstrace.session import Session
    here = [c for c in STRESS_CASES if CASES[c].check() is None]
    why = CASES["rqspinlock"].check()
    if why:     # the stress above covers this kernel's cases; this one is about rqspinlock
        pytest.skip(f"no rqspinlock here: {why}")
    wanted = list(probes.DEFAULT_NAMES) + list(probes.helpers.MAP_PROBES)
    log0, made, runs, gaps = len(kernel_log()), {}, {c: 0 for c in here}, [0.0]
    with Session(mode="fentry", probes=wanted) as a, Session(mode="fentry", probes=wanted) as b:
        before = [s.snapshot() for s in (a, b)]
        deadline, last = time.monotonic() + SECONDS, time.monotonic()
        while time.monotonic() < deadline:
            for case in here:
                r = run_case(case, duration=2.0, cpus=CPUS)
                assert r.runnable, (case, r.reason)
                runs[case] += 1
                for k, n in CASES[case].made_rq(r).items():
                    made[k] = made.get(k, 0) + n
                now = time.monotonic()
                gaps.append(now - last)
                last = now
        deltas = [s.snapshot().delta(o) for s, o in zip((a, b), before)]
    bad = [line for line in kernel_log()[log0:] if any(w in line for w in BAD_KERNEL_LOG)]
    assert not bad, bad
    assert max(gaps) < 60.0, f"a case took {max(gaps):.0f} s"

    def drop_kind(d):
        out = {}
        for (cpu, err, _kind, user), n in d.items():
            out[(cpu, err, user)] = out.get((cpu, err, user), 0) + n
        return out
    kinds_known = not any(k[2] == "unknown" for k in made)
    for d in deltas:
        got = {k: n for k, n in d.rq_failures.items() if n}
        if kinds_known:
            assert got == made, (got, made, runs)
        assert drop_kind(got) == drop_kind(made), (got, made, runs)
    print(f"stress {SECONDS:.0f} s, every case, two instances, on {os.uname().release}: "
          f"runs {runs}, rqspinlock failures made {sum(made.values())} = counted by each; "
          f"kernel log clean")
