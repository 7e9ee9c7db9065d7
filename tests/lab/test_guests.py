"""Drives tests/guest inside real Debian kernels of all three generations
(fentry and kprobe modes cannot run on hosts that forbid them)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.lab


@pytest.mark.parametrize("kernel", ["6.1", "6.12", "7"])
def test_guest_suite(kernel):
    if os.geteuid() != 0:
        pytest.skip("the kernel lab needs root (qemu, virtiofsd)")
    t0 = time.monotonic()
    r = subprocess.run([str(ROOT / "tests/lab/run"), kernel, "--cpus", "2", "--",
                        "env", "LSTRACE_IN_LAB=1", sys.executable, "-m", "pytest", "-q",
                        "--color=no", "-p", "no:warnings", "-rs", "tests/guest"],
                       cwd=ROOT, capture_output=True, text=True, timeout=1200)
    print(r.stdout[-6000:], r.stderr[-3000:])
    print(f"kernel {kernel}: {time.monotonic() - t0:.1f} s")
    assert r.returncode == 0, f"guest suite failed on {kernel}:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    assert " passed" in r.stdout and "skipped" not in r.stdout.split("passed")[-1]
