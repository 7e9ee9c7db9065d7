"""`lstrace top` in a real terminal (tmux) on this host while a workload with a
known number of bpf() errors runs pinned to one CPU."""
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from support import ROOT, held_prog_ids
from lstrace import bpfsys, workload

pytestmark = pytest.mark.root

N_ENOENT = 4321


def next_key_errors(cpu, n):
    """BPF_MAP_GET_NEXT_KEY on an empty hash map, n times on `cpu`: each fails
    with ENOENT (a command other tests on this host do not use).  Returns the
    number of ENOENT failures counted from the return values."""
    import ctypes
    import errno
    import struct
    fd = workload.create_hash_map()
    key = ctypes.create_string_buffer(b"\x07\0\0\0", 4)
    nxt = ctypes.create_string_buffer(4)
    attr = struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(nxt), 0)
    failed = 0
    try:
        with workload.pinned(cpu):
            for _ in range(n):
                try:
                    bpfsys.bpf(bpfsys.CMD["MAP_GET_NEXT_KEY"], attr, "BPF_MAP_GET_NEXT_KEY")
                except bpfsys.BPFError as e:
                    failed += e.errno == errno.ENOENT
    finally:
        os.close(fd)
    return failed


def _tmux(*args, check=True):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=check)


def _capture(name):
    return _tmux("capture-pane", "-p", "-t", name).stdout


def _wait_for(name, pred, timeout):
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = _capture(name)
        if pred(screen):
            return screen
        time.sleep(0.25)
    raise AssertionError(f"timed out; screen was:\n{screen}")


def _top_pid(name):
    shell = int(_tmux("display", "-p", "-t", name, "#{pane_pid}").stdout)
    with open(f"/proc/{shell}/task/{shell}/children") as f:
        kids = [int(k) for k in f.read().split()]
    return kids[0] if kids else shell


def _section(screen, title):
    lines = screen.splitlines()
    i = next(i for i, line in enumerate(lines) if line.strip() == title)
    out = []
    for line in lines[i + 3:]:
        if not line.strip():
            break
        out.append(line.split())
    return out


@pytest.fixture
def tmux_top():
    if not shutil.which("tmux"):
        pytest.skip("tmux not installed (apt-get install -y tmux)")
    name = "lst-top-" + uuid.uuid4().hex[:8]
    rc_file = f"/tmp/{name}.rc"
    cmd = f"cd {ROOT} && {sys.executable} -m lstrace top -i 1; echo $? > {rc_file}"
    _tmux("new-session", "-d", "-s", name, "-x", "200", "-y", "100", cmd)
    try:
        yield name, rc_file
    finally:
        _tmux("kill-session", "-t", name, check=False)
        if os.path.exists(rc_file):
            os.unlink(rc_file)


def test_top_in_tmux_shows_the_workload(tmux_top):
    name, rc_file = tmux_top
    cpu = max(os.sched_getaffinity(0))
    _wait_for(name, lambda s: "Per CPU" in s and "bpf() syscall errors" in s, 30)
    assert next_key_errors(cpu, N_ENOENT) == N_ENOENT

    def shows_workload(screen):
        rows = _section(screen, "bpf() syscall errors") if "bpf() syscall errors" in screen else []
        return any(r[-6:-2] == [str(cpu), "MAP_GET_NEXT_KEY", "hash", "ENOENT"] and
                   r[-1] == str(N_ENOENT) for r in rows)
    screen = _wait_for(name, shows_workload, 10)
    assert "lstrace top - kernel " + os.uname().release in screen
    assert re.search(r"probes \d+/\d+ attached \(.*tracepoint", screen)

    # the per-CPU rate of the interval that saw the errors: catch it within a few refreshes
    def cpu_rate_nonzero(screen):
        rows = {r[-12]: r for r in _section(screen, "Per CPU")}
        return str(cpu) in rows and rows[str(cpu)][0] == "!" and float(rows[str(cpu)][-3]) > 0
    if not cpu_rate_nonzero(screen):
        # the rate row shows only one interval: run the workload again, watch the next refresh
        next_key_errors(cpu, N_ENOENT)
        screen = _wait_for(name, cpu_rate_nonzero, 5)
    rows = {r[-12]: r for r in _section(screen, "Per CPU")}
    assert rows[str(cpu)][-1] == "bpf_syscall"        # worst probe
    probes = {r[-9]: r for r in _section(screen, "Per probe point")}
    assert probes["bpf_syscall"][-8] == "tracepoint"
    assert probes["rqspinlock"][-8] == "tracepoint"

    _tmux("send-keys", "-t", name, "s")              # sort cycles, screen keeps working
    _wait_for(name, lambda s: "sort: calls" in s, 5)
    _tmux("send-keys", "-t", name, "c")
    _wait_for(name, lambda s: "focus: probe" in s, 5)
    ours = held_prog_ids(_top_pid(name))
    assert len(ours) >= 3          # bpf_syscall: 1 (tp_btf sys_exit); rqspinlock: 2
    _tmux("send-keys", "-t", name, "q")
    end = time.monotonic() + 15
    while not os.path.exists(rc_file) and time.monotonic() < end:
        time.sleep(0.1)
    with open(rc_file) as f:
        assert f.read().strip() == "0"
    if shutil.which("bpftool"):
        # the kernel frees a detached raw_tp program after a grace period: allow it 5 s
        end = time.monotonic() + 5
        while ours & set(bpfsys.iter_prog_ids()) and time.monotonic() < end:
            time.sleep(0.1)
        assert not ours & set(bpfsys.iter_prog_ids()), "top left programs loaded"


def test_top_once_and_json_without_tty():
    out = subprocess.run([sys.executable, "-m", "lstrace", "top", "--once",
                          "--probes", "bpf_syscall,rqspinlock"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout and "Per CPU" in out.stdout
    out = subprocess.run([sys.executable, "-m", "lstrace", "top", "--json", "-i", "0.5",
                          "-d", "1", "--probes", "bpf_syscall"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    import json
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(objs) == 2
    from test_render import TOP_KEYS
    assert all(set(o) == TOP_KEYS for o in objs)


def test_top_bad_input_is_one_line():
    out = subprocess.run([sys.executable, "-m", "lstrace", "top", "--probes", "nope"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("lstrace: unknown probe nope") and "Traceback" not in out.stderr
