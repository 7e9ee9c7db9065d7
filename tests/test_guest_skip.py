"""tests/guest outside a lab guest: every test skips and says why (one condition,
tests/guest/conftest.py), and the lab never accepts that skip inside a guest
(tests/lab/test_guests.py fails a guest run on any skip but a generation's own),
so a guest run without LSTRACE_IN_LAB=1 fails instead of passing empty (no root)."""
import importlib.util
import os
import re
import subprocess
import sys

from support import ROOT


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REASON = _module("tests/guest/conftest.py", "guest_conftest").REASON


def test_guest_tests_skip_with_the_reason_outside_a_guest():
    env = {k: v for k, v in os.environ.items() if k != "LSTRACE_IN_LAB"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "--color=no",
                        "-p", "no:cacheprovider", "tests/guest"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    skips = [ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert skips and all(ln.endswith(REASON) for ln in skips), skips
    counted = sum(int(re.match(r"SKIPPED \[(\d+)\]", ln).group(1)) for ln in skips)
    assert re.search(rf"\b{counted} skipped\b", r.stdout) and " passed" not in r.stdout


def test_the_lab_fails_a_guest_run_that_skips_so():
    lab = _module("tests/lab/test_guests.py", "lab_test_guests")
    assert not any(w in REASON for w in lab.EXPECTED_SKIPS)
