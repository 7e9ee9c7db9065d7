"""The lab runner for real: boots each pinned kernel under qemu (one guest at a time).

Root only (virtiofsd); the first run fetches the kernels into the cache (a minute or so).
"""
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent / "run"
RELEASE = {"6.1": r"6\.1\.0-\d+-amd64", "6.12": r"6\.12\.\d+\+deb12-amd64",
           "7": r"7\.\d+\.\d+\+deb\d+-amd64", "sid": r"\d+\.\d+\.\d+\+deb\d+-amd64"}
KERNELS = list(RELEASE)
# Runs BCC the way lstrace does (Debian's python3-bpfcc is for the system python).
BCC = """
import subprocess
from bcc import BPF
a = BPF(text='int kprobe__bpf_task_storage_get(void *ctx) { return 0; }')
b = BPF(text='KRETFUNC_PROBE(bpf_task_storage_get, u64 a, u64 b, u64 c, u64 d, u64 e, u64 ret)'
             '{ return 0; }')
print('bcc ok', flush=True)
subprocess.run(['bpftool', 'prog', 'list'], check=True)
"""

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab runner needs root (virtiofsd)")]


def lab(*args, limit=900):
    """Run tests/lab/run with its own TMPDIR, so its qemu/virtiofsd can be told from others'."""
    tmp = tempfile.mkdtemp(prefix="lab-test.")
    p = subprocess.run([str(RUN), *args], capture_output=True, text=True, timeout=limit,
                       env=dict(os.environ, TMPDIR=tmp))
    p.leftovers = _processes_mentioning(tmp)
    os.rmdir(tmp)  # fails if the runner left its run directory behind
    return p


def _processes_mentioning(text):
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and text in cmd:
            found.append(f"{proc.name}: {cmd}")
    return found


@pytest.mark.parametrize("kernel", KERNELS)
def test_uname_cpus_and_exit_code(kernel):
    p = lab(kernel, "--cpus", "3", "--", "sh", "-c",
            'uname -r; nproc; test -f "/lib/modules/$(uname -r)/build/Makefile" && echo headers;'
            ' echo "$PWD"; exit 3')
    assert p.returncode == 3, p.stderr
    lines = p.stdout.splitlines()
    assert re.fullmatch(RELEASE[kernel], lines[0]), p.stdout
    assert lines[1:] == ["3", "headers", os.getcwd()], p.stdout
    assert "exit 3" in p.stderr  # the runner's summary line: the command's 3, not a boot failure
    assert not p.leftovers


@pytest.mark.parametrize("kernel", KERNELS)
def test_bcc_compiles_against_guest_headers(kernel):
    p = lab(kernel, "--", "/usr/bin/python3", "-c", BCC)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "bcc ok" in p.stdout
    assert "kretfunc__bpf_task_storage_get" in p.stdout  # seen by bpftool in the guest


def test_env_and_out_dir(tmp_path):
    p = lab("6.12", "--env", "LSTRACE_X=1", "--env", "OTHER=two words", "--out", str(tmp_path),
            "--", "sh", "-c", 'echo "$LSTRACE_X/$OTHER" > "$LAB_OUT/f"; touch /tmp/scratch;'
                              ' ! touch ./readonly 2>/dev/null')
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "f").read_text() == "1/two words\n"


def test_guest_that_cannot_boot():
    p = lab("6.12", "--append", "init=/nonexistent", "--", "true")
    assert p.returncode == 3, p.stdout + p.stderr
    assert "Console tail" in p.stderr and "Kernel panic" in p.stderr
    assert "retrying" not in p.stderr  # a bad init would only fail again
    assert not p.leftovers


def test_timeout_before_boot():
    p = lab("7", "--timeout", "1", "--", "true")
    assert p.returncode == 3, p.stdout + p.stderr
    assert "Console tail" in p.stderr
    assert not p.leftovers


def test_command_timeout():
    p = lab("6.12", "--timeout", "25", "--", "sh", "-c", "echo started; sleep 600")
    assert p.returncode == 5, p.stdout + p.stderr
    assert "started" in p.stdout and "--timeout 25 s passed" in p.stderr
    assert not p.leftovers


def test_usage_errors():
    assert lab("5.4", "--", "true").returncode == 2
    assert lab("7").returncode == 2  # no command
    listing = lab("--list")
    assert listing.returncode == 0 and "7.3.4+deb13-amd64" in listing.stdout


def test_crash_before_command_is_retried_once():
    # init exiting panics the kernel: a crash signature, so the runner boots a second time.
    p = lab("6.12", "--append", "init=/bin/false", "--", "true")
    assert p.returncode == 3, p.stdout + p.stderr
    assert p.stderr.count("retrying once") == 1
    assert "Attempted to kill init" in p.stderr
    assert not p.leftovers


def test_debian13_root_is_trixie():
    """--root debian13: Debian 13's userspace (BCC 0.31, Python 3.13) with the checkout at its
    host path and importable, the root read-only."""
    p = lab("7", "--root", "debian13", "--", "sh", "-c",
            'cat /etc/debian_version; echo "$LAB_ROOT $PWD"; '
            'python3 -c "import sys, bcc, lstrace; print(sys.version.split()[0]); '
            'print(bcc.__version__); print(lstrace.__file__)"; '
            '! touch /lab-rw-probe 2>/dev/null && echo root-ro')
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("13."), p.stdout
    assert lines[1] == f"debian13 {os.getcwd()}", p.stdout
    assert lines[2].startswith("3.13.") and lines[3].startswith("0.31."), p.stdout
    assert lines[4:] == [str(RUN.parents[2] / "lstrace" / "__init__.py"), "root-ro"], p.stdout
    assert "on debian13" in p.stderr and not p.leftovers


def test_arm64_guest():
    """--arch arm64: Debian's arm64 7.x under qemu-system-aarch64 with the debian13 arm64 root
    (the default root there), the command's output over the virtio console, its exit code
    back, nothing left running; and the host's binfmt_misc as it was."""
    binfmt = sorted(os.listdir("/proc/sys/fs/binfmt_misc"))
    p = lab("7", "--arch", "arm64", "--cpus", "3", "--", "sh", "-c",
            'uname -m -r; nproc; test -f "/lib/modules/$(uname -r)/build/Makefile" && echo headers;'
            ' echo "$LAB_ARCH $LAB_ROOT $PWD"; exit 3')
    assert p.returncode == 3, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert re.fullmatch(r"7\.\d+\.\d+\+deb\d+-arm64 aarch64", lines[0]), p.stdout
    assert lines[1:] == ["3", "headers", f"arm64 debian13 {os.getcwd()}"], p.stdout
    assert "exit 3" in p.stderr and "-arm64 on debian13" in p.stderr
    assert not p.leftovers
    assert sorted(os.listdir("/proc/sys/fs/binfmt_misc")) == binfmt


def test_arm64_usage_errors():
    assert lab("7", "--arch", "arm64", "--root", "host", "--", "true").returncode == 2
    assert lab("6.1", "--arch", "arm64", "--", "true").returncode == 2
    assert lab("7", "--arch", "s390x", "--", "true").returncode == 2
