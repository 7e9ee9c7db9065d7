"""Runs inside a kernel-lab guest (6.15+ / 7.0+): every rqspinlock failure the
`htab-deadlock` repro makes (a hash-map update nested inside a replace of the
same key on the same CPU: AA on the bucket lock) and the `storage-deadlock`
repro makes (7.0+: a task-storage delete nested inside an update of the same
task: AA on its local_storage->lock), each counted by the workload's own BPF
programs per CPU, must appear in lstrace_rqspinlock_failures_total and
lstrace_rqspinlock_cpu_failures_total (the exporter's own output of real
snapshots), exactly, per CPU x errno x kind x lock user, with `--probes +maps`
(the hash-map boundary), and with a second lstrace instance running:

  fentry   the fexit finds the failing lock (the key's bucket lock: jhash and
           BTF offsets; the owner's storage lock: BTF offsets) in this CPU's
           held-locks table: AA;
  kprobe   a kretprobe sees no arguments: kind unknown, still exact per CPU x
           errno.

Without +maps the failures are not counted (the view says partial, and on 7.x
no htab failure reaches lock:contention_end: AA is found before queueing).
The nmi kind is checked on a forced path (the lab's TCG makes no NMIs):
NMI_MASK replaced by the preemption bits, which every lock-path failure has.
"""
import os
import shutil
import signal
import subprocess
import time

import pytest
from test_stress import BAD_KERNEL_LOG, kernel_log

from lstrace import probes

CPUS = [0, 1]
MAPS = list(probes.DEFAULT_NAMES) + list(probes.helpers.MAP_PROBES)
CASE = "htab-deadlock"
# case -> the lock user its failures belong to, the probe that is its boundary
BOUNDARY = {"htab-deadlock": ("htab", "htab_update"),
            "storage-deadlock": ("local_storage", "task_storage_delete")}


def made(r):
    """{(cpu, errno, kind, lock user): n} of the nested calls (AA by construction)."""
    from lstrace.repro import CASES
    return CASES[r.name].made_rq(r)


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


def run_until(n_min, sessions, case=CASE):
    from lstrace.repro import run_case
    before = [s.snapshot() for s in sessions]
    want, verdicts = {}, []
    for _ in range(8):             # at least n_min failures, however loaded the machine is
        r = run_case(case, duration=3.0, cpus=CPUS)
        assert r.runnable, r.reason
        verdicts.append(r.verdict)
        for k, n in made(r).items():
            want[k] = want.get(k, 0) + n
        if sum(want.values()) >= n_min:
            break
    return before, [s.snapshot() for s in sessions], want, verdicts


def applies(case):
    from lstrace.repro import CASES
    why = CASES[case].check()
    if why:
        pytest.skip(f"no rqspinlock here: {why}")


@pytest.fixture(scope="module")
def here():
    applies(CASE)


def by_cpu_errno(want):
    out = {}
    for (cpu, err, *_), n in want.items():
        out[(cpu, err)] = out.get((cpu, err), 0) + n
    return out


# bpftrace on the same functions, its counts in its own (hash) maps
BPFTRACE = ("kretfunc:vmlinux:htab_map_update_elem { @r[probe, retval] = count(); } "
            "kretfunc:vmlinux:bpf_task_storage_delete { @r[probe, retval] = count(); }")


class Bpftrace:
    """bpftrace running BPFTRACE until the block ends (SIGINT: it prints its maps)."""

    def __enter__(self):
        exe = shutil.which("bpftrace")
        assert exe, "bpftrace is missing: scripts/install.sh --test installs it"
        self.p = subprocess.Popen([exe, "-e", BPFTRACE], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        line = self.p.stdout.readline()
        assert line.startswith("Attaching"), line
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        self.p.send_signal(signal.SIGINT)
        self.out = self.p.communicate(timeout=60)[0]
        self.rc = self.p.returncode
        return False


@pytest.mark.parametrize("case", sorted(BOUNDARY))
def test_failures_exact_at_the_boundary_two_instances(case):
    """Two lstrace instances (fentry, kprobe) and bpftrace on the same
    functions: both instances exact, bpftrace fine, the kernel log clean."""
    from lstrace.session import Session
    applies(case)
    probe, log0 = BOUNDARY[case][1], len(kernel_log())
    with Bpftrace() as bt, Session(mode="fentry", probes=MAPS) as a, \
            Session(mode="kprobe", probes=MAPS) as b:
        for s in (a, b):
            st = {x.name: x for x in s.statuses()}
            assert st[probe].attached and st[probe].mode == s.mode, st
        before, after, want, verdicts = run_until(10_000, (a, b), case)
    assert bt.rc == 0 and "@r[" in bt.out, (bt.rc, bt.out[-2000:])
    bad = [line for line in kernel_log()[log0:] if any(w in line for w in BAD_KERNEL_LOG)]
    assert not bad, bad
    assert sum(want.values()) >= 10_000, verdicts
    total_a, cpu_a = exported(before[0], after[0])
    total_b, cpu_b = exported(before[1], after[1])
    sums = {}
    for (_cpu, err, kind, user), n in want.items():
        sums[(err, kind, user)] = sums.get((err, kind, user), 0) + n
    assert total_a == sums, (total_a, want, verdicts)
    assert cpu_a == by_cpu_errno(want), (cpu_a, want)
    # kprobe mode: no key at the kretprobe, the same failures with kind unknown
    unknown = {}
    for (err, kind, user), n in sums.items():
        k = (err, "timeout" if kind == "timeout" else "unknown", user)
        unknown[k] = unknown.get(k, 0) + n
    assert total_b == unknown, (total_b, want)
    assert cpu_b == by_cpu_errno(want), (cpu_b, want)
    print(f"{case} on {os.uname().release}: made {sorted(want.items())}; fentry counted "
          f"{sorted(total_a.items())}; kprobe counted {sorted(total_b.items())}")


def test_htab_failures_without_maps_are_not_claimed(here):
    """The default probes have no hash-map boundary: nothing is counted as
    htab but what lock:contention_end sees, and the view says partial."""
    from lstrace.probes import lock_users
    from lstrace.session import Session
    with Session(mode="fentry") as s:
        before, after, want, _ = run_until(1_000, (s,))
        attached = {p.name: (p.attached, p.mode) for p in after[0].probes}
    assert "htab_update" not in attached
    total, _cpu = exported(before[0], after[0])
    htab = sum(n for (_e, _k, user), n in total.items() if user == "htab")
    assert htab <= sum(want.values()), (total, want)
    views = {u: v for u, v, _how in lock_users.views(attached, "C")}
    assert views["htab"] == "partial", views
    from scrape import samples
    unseen = [v - samples(before[0])[0].get(k, 0) for k, v in samples(after[0])[0].items()
              if k == ("lstrace_rqspinlock_unseen_failures_total",
                       frozenset({("lock_user", "htab")}))]
    assert unseen == [htab], unseen      # what only lock:contention_end saw
    print(f"without +maps on {os.uname().release}: made {sum(want.values())}, "
          f"counted as htab {htab} (lock:contention_end only)")


def test_nmi_kind_on_a_forced_path(here, monkeypatch):
    from lstrace.probes.rqspinlock_kernel import NMI_MASK_ENV
    from lstrace.session import Session
    monkeypatch.setenv(NMI_MASK_ENV, "0xff")       # PREEMPT_MASK: set on every lock path
    with Session(mode="fentry", probes=MAPS) as s:
        before, after, want, _ = run_until(1_000, (s,))
    total, cpu = exported(before[0], after[0])
    nmi = {}
    for (_cpu, err, _kind, user), n in want.items():
        nmi[(err, "nmi", user)] = nmi.get((err, "nmi", user), 0) + n
    assert total == nmi, (total, want)
    assert cpu == by_cpu_errno(want)
