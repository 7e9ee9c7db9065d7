"""Drives tests/guest inside real Debian kernels of all three generations
(fentry and kprobe modes cannot run on hosts that forbid them)."""
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.lab


# Also run inside a guest: where helper probes attach, Prometheus must hold
# the helper workloads' exact counts and every helper panel must have data
# (this host has no helper probes; it covers the rqspinlock panels itself).
EXTRA = {"6.12": ["tests/test_serve_e2e.py::test_prometheus_scrapes_ground_truth_and_every_expression"]}


# what a generation lacks (busy counters, rqspinlock) or a mode cannot see
EXPECTED_SKIPS = ("not this generation", "no rqspinlock here", "kprobe mode is blind there")


def guest_pytest(*args, python=sys.executable):
    """The command that runs pytest inside a guest (on the host's root: this python)."""
    return ["env", "LSTRACE_IN_LAB=1", python, "-m", "pytest", "-q", "--color=no",
            "-p", "no:warnings", "-rs", *args]


def run_in_guest(kernel, command, *lab_opts, what):
    """tests/lab/run KERNEL ... -- command; prints the tail and the time, and
    fails with them unless the command exited 0."""
    if os.geteuid() != 0:
        pytest.skip("the kernel lab needs root (qemu, virtiofsd)")
    t0 = time.monotonic()
    r = subprocess.run([str(ROOT / "tests/lab/run"), kernel, "--cpus", "2", *lab_opts, "--",
                        *command], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    print(r.stdout[-6000:], r.stderr[-3000:])
    print(f"{what}: {time.monotonic() - t0:.1f} s")
    assert r.returncode == 0, f"{what} failed:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    return r


def assert_passed(r):
    """pytest passed in the guest, skipping only for a reason of that kernel's generation."""
    assert " passed" in r.stdout
    skips = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    unexpected = [line for line in skips if not any(w in line for w in EXPECTED_SKIPS)]
    assert not unexpected, unexpected


# "sid": Debian sid's newest kernel (issue 13 item 8), another 7.x line than "7"
@pytest.mark.parametrize("kernel", ["6.1", "6.12", "7", "sid"])
def test_guest_suite(kernel):
    assert_passed(run_in_guest(kernel, guest_pytest("tests/guest", *EXTRA.get(kernel, [])),
                               what=f"kernel {kernel}"))


# The second userspace (Debian 13: BCC 0.31, Python 3.13, the guest's own python3): the whole
# suite on 7.x; on 6.12 the helper truth tests in both modes, and doctor and the workload counts
# that assert the mode (a failed fentry attach falls back to kprobe, where helper-calls pass too).
# (Counting mode only there: --latency compiles and attaches the same way, and the host
# root's runs cover it on every kernel.)
DEBIAN13 = {"7": ["tests/guest", "-k", "not latency"],
            "6.12": ["tests/guest/test_repro_truth.py", "tests/guest/test_in_guest.py",
                     "-k", "(helper_calls or counts_equal or doctor_generation) and not latency"]}


@pytest.mark.parametrize("kernel", DEBIAN13)
def test_guest_suite_on_debian13(kernel):
    assert_passed(run_in_guest(kernel, guest_pytest(*DEBIAN13[kernel], python="python3"),
                               "--root", "debian13", what=f"kernel {kernel} on debian13"))


def test_busy_exact_under_preempt_full():
    """On a preemptible kernel several tasks on one CPU interleave inside the
    storage code and lstrace's own programs can be preempted: the busy counts
    and the bpf() errors must stay exact there too (6.12 booted with preempt=full)."""
    check = ("grep -q '(full)' /sys/kernel/debug/sched/preempt || "
             "{ echo 'not preempt=full:'; cat /sys/kernel/debug/sched/preempt; exit 9; }; ")
    # busy: counting mode and --latency; bpf() errors: fentry and tracepoint mode
    run = shlex.join(guest_pytest("-s", "tests/guest/test_repro_truth.py",
                                  "tests/guest/test_bpf_syscall.py", "-k",
                                  "busy and fentry or bpf_syscall_errors"))
    r = run_in_guest("6.12", ["sh", "-c", check + "exec " + run], "--preempt", "full",
                     what="6.12 preempt=full")
    assert "4 passed" in r.stdout and r.stdout.count("busy exact") == 2
    assert r.stdout.count("bpf_syscall ") >= 2
