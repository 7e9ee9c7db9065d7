"""Drives tests/guest inside real Debian kernels of all three generations
(fentry and kprobe modes cannot run on hosts that forbid them)."""
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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


# Guests run two at a time (tests/lab/run --slots: one host core each, single-threaded TCG):
# the module's selected runs start together, longest first, and each test waits for its own.
SLOTS = int(os.environ.get("LSTRACE_LAB_SLOTS", "2"))


def run_in_guest(kernel, command, *lab_opts, what, limit=1800):
    """tests/lab/run KERNEL ... -- command (a CompletedProcess, plus .seconds and .what)."""
    t0 = time.monotonic()
    r = subprocess.run([str(ROOT / "tests/lab/run"), kernel, "--cpus", "2", "--slots", str(SLOTS),
                        *lab_opts, "--", *command], cwd=ROOT, capture_output=True, text=True,
                       timeout=limit)
    r.seconds, r.what = time.monotonic() - t0, what
    return r


def finished(r):
    """Prints a run's tail and time; fails with them unless the command exited 0."""
    print(r.stdout[-6000:], r.stderr[-3000:])
    print(f"{r.what}: {r.seconds:.1f} s")
    assert r.returncode == 0, f"{r.what} failed:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    return r


@pytest.fixture(scope="module")
def lab(request):
    """{test name: Future of its guest run}: every selected test's run, started at once."""
    if os.geteuid() != 0:
        pytest.skip("the kernel lab needs root (qemu, virtiofsd)")
    names = [item.name for item in request.session.items if item.module.__name__ == __name__]
    order = sorted((n for n in names if n in RUNS), key=lambda n: -RUNS[n][0])
    with ThreadPoolExecutor(max_workers=SLOTS) as pool:
        yield {n: pool.submit(RUNS[n][1]) for n in order}


def assert_passed(r):
    """pytest passed in the guest, skipping only for a reason of that kernel's generation."""
    assert " passed" in r.stdout
    skips = [line for line in r.stdout.splitlines() if line.startswith("SKIPPED")]
    unexpected = [line for line in skips if not any(w in line for w in EXPECTED_SKIPS)]
    assert not unexpected, unexpected


# What a kernel's suite leaves to another kernel of its kind, to keep CI's lab time down:
# --latency variants (entry programs and clocks) run on 7 and 6.1, the others count (the
# default mode); the map probes run on 6.12 (map_locked -EBUSY) and 7 (rqspinlock).
# The rqspinlock boundaries' forced nmi path and their blind spot without +maps run on 7.
DESELECT = {"6.1": "not map_probes", "6.12": "not latency", "7": "",
            "sid": "not latency and not map_probes and not nmi_kind and not without_maps"}


def suite(kernel):
    """The guest pytest run of tests/guest on one kernel."""
    args = ["tests/guest", *EXTRA.get(kernel, [])]
    if DESELECT[kernel]:
        args += ["-k", DESELECT[kernel]]
    return lambda: run_in_guest(kernel, guest_pytest(*args), what=f"kernel {kernel}")


# The second userspace (Debian 13: BCC 0.31, Python 3.13, the guest's own python3): on 7.x the
# helper truth tests, the workload counts, doctor and bpf() errors; on 6.12 the helper truth
# tests in both modes, and doctor and the workload counts that assert the mode (a failed fentry
# attach falls back to kprobe, where helper-calls pass too).  Counting mode only there:
# --latency compiles and attaches the same way, and the host root's runs cover it.
DEBIAN13 = {"7": ["tests/guest/test_repro_truth.py", "tests/guest/test_in_guest.py",
                  "tests/guest/test_bpf_syscall.py", "-k", "not latency"],
            "6.12": ["tests/guest/test_repro_truth.py", "tests/guest/test_in_guest.py",
                     "-k", "(helper_calls or counts_equal or doctor_generation) and not latency"]}


def debian13(kernel):
    return lambda: run_in_guest(kernel, guest_pytest(*DEBIAN13[kernel], python="python3"),
                                "--root", "debian13", what=f"kernel {kernel} on debian13")


# arm64 (tests/lab/README.md, --arch arm64): Debian's arm64 build of the same kernels under
# qemu-system-aarch64 (TCG) with the debian13 arm64 root.  The arch table against the running
# kernel, the helper truth tests (counting mode: fentry and kprobe), bpf() errors, doctor's
# generation and modes; on 7 first `serve --once`, whose exposition promtool checks on this
# host (promtool is an x86-64 program).  6.12: the busy-counter era (generation B).
ARM64 = {"7": ["tests/guest/test_arch_guest.py", "tests/guest/test_repro_truth.py",
               "tests/guest/test_bpf_syscall.py", "tests/guest/test_in_guest.py",
               "-k", "not latency and (arch or helper_calls or syscall_path or rqspinlock or "
                     "attaches or bpf_syscall_errors or doctor_generation)"],
         "6.12": ["tests/guest/test_arch_guest.py", "tests/guest/test_repro_truth.py",
                  "tests/guest/test_in_guest.py",
                  "-k", "not latency and (arch or helper_calls or busy or doctor_generation)"]}
METRICS = "metrics.prom"


def arm64(kernel, serve=False):
    def run():
        with tempfile.TemporaryDirectory(prefix="lstrace-arm64.") as out:
            first = f'python3 -m lstrace serve --once > "$LAB_OUT/{METRICS}" && ' if serve else ""
            r = run_in_guest(kernel, ["sh", "-c", first + "exec " + shlex.join(
                                 guest_pytest(*ARM64[kernel], python="python3"))],
                             "--arch", "arm64", "--out", out, "--timeout", "1500",
                             what=f"kernel {kernel} on arm64", limit=2700)  # + a cold root build
            f = Path(out) / METRICS
            r.metrics = f.read_text() if f.exists() else None
        return r
    return run


PREEMPT_CHECK = ("grep -q '(full)' /sys/kernel/debug/sched/preempt || "
                 "{ echo 'not preempt=full:'; cat /sys/kernel/debug/sched/preempt; exit 9; }; ")


def preempt_full():
    # busy: counting mode and --latency; bpf() errors: fentry and tracepoint mode
    run = shlex.join(guest_pytest("-s", "tests/guest/test_repro_truth.py",
                                  "tests/guest/test_bpf_syscall.py", "-k",
                                  "busy and fentry or bpf_syscall_errors"))
    return run_in_guest("6.12", ["sh", "-c", PREEMPT_CHECK + "exec " + run], "--preempt", "full",
                        what="6.12 preempt=full")


def rqspinlock_preempt_full():
    # the kfunc probe's and the boundaries' exact counts with preemptible tasks and
    # lstrace programs (7.x)
    run = shlex.join(guest_pytest("-s", "tests/guest/test_rqspinlock_kfunc.py",
                                  "tests/guest/test_rq_boundaries.py", "-k",
                                  "not without_maps and not nmi"))
    return run_in_guest("7", ["sh", "-c", PREEMPT_CHECK + "exec " + run], "--preempt", "full",
                        what="7 preempt=full")


# test name -> (estimated seconds: longest start first, the run)
# "sid": Debian sid's newest kernel (issue 13 item 8), another 7.x line than "7"
RUNS = {"test_guest_suite[7]": (900, suite("7")),
        "test_guest_suite[6.1]": (700, suite("6.1")),
        "test_guest_suite[sid]": (600, suite("sid")),
        "test_guest_suite[6.12]": (600, suite("6.12")),
        "test_guest_suite_on_debian13[7]": (400, debian13("7")),
        "test_busy_exact_under_preempt_full": (220, preempt_full),
        "test_rqspinlock_kfunc_exact_under_preempt_full": (480, rqspinlock_preempt_full),
        "test_guest_suite_on_debian13[6.12]": (200, debian13("6.12")),
        "test_guest_suite_on_arm64[7]": (600, arm64("7", serve=True)),
        "test_guest_suite_on_arm64[6.12]": (400, arm64("6.12"))}


@pytest.mark.parametrize("kernel", ["6.1", "6.12", "7", "sid"])
def test_guest_suite(kernel, lab, request):
    assert_passed(finished(lab[request.node.name].result()))


@pytest.mark.parametrize("kernel", DEBIAN13)
def test_guest_suite_on_debian13(kernel, lab, request):
    assert_passed(finished(lab[request.node.name].result()))


def test_busy_exact_under_preempt_full(lab, request):
    """On a preemptible kernel several tasks on one CPU interleave inside the
    storage code and lstrace's own programs can be preempted: the busy counts
    and the bpf() errors must stay exact there too (6.12 booted with preempt=full)."""
    r = finished(lab[request.node.name].result())
    assert "4 passed" in r.stdout and r.stdout.count("busy exact") == 2
    assert r.stdout.count("bpf_syscall ") >= 2


def test_rqspinlock_kfunc_exact_under_preempt_full(lab, request):
    """7.x booted with preempt=full: every failed bpf_res_spin_lock, and every
    hash-map and local-storage deadlock at its boundary, still counted exactly,
    per CPU x errno x kind, by two instances side by side."""
    r = finished(lab[request.node.name].result())
    # the kfunc's 2 tests, and the boundaries' 2 (htab-deadlock, storage-deadlock)
    assert "4 passed" in r.stdout and r.stdout.count("rqspinlock_kfunc ") == 2
    assert r.stdout.count("-deadlock on ") == 2


@pytest.mark.parametrize("kernel", ARM64)
def test_guest_suite_on_arm64(kernel, lab, request):
    """The arm64 guest's truth tests pass (none skipped but for its generation), and on 7
    its `serve --once` exposition passes promtool check metrics (the exposition does not
    depend on the generation: once is enough under TCG)."""
    r = finished(lab[request.node.name].result())
    assert_passed(r)
    if kernel != "7":
        return
    assert r.metrics and "lstrace_" in r.metrics, "serve --once wrote no exposition"
    check = subprocess.run(["promtool", "check", "metrics"], input=r.metrics,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
