"""What host tests share: the checkout, running lstrace, the BPF programs and
host state it must leave as found (tests import it; conftest.py holds pytest's hooks)."""
import glob
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def lstrace_cmd(*args):
    return [PY, "-m", "lstrace", *args]


def run_lstrace(*args, timeout=120, **kw):
    return subprocess.run(lstrace_cmd(*args), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kw)


def held_prog_ids(pid="*"):
    """IDs of the BPF programs process `pid` (default: any) holds fds of, from
    fdinfo: bpftool's owner column is empty on this kernel, and other people's
    lstrace sessions may run here too."""
    ids = set()
    for f in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            with open(f) as fh:
                for line in fh:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def lstrace_prog_ids():
    """IDs of lstrace programs loaded now (names: lst_*, tracepoint__syscalls*,
    kfunc__*, kretfunc__*)."""
    out = subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True, text=True)
    return {p["id"] for p in json.loads(out.stdout or "[]")
            if p.get("name", "").startswith(("lst_", "tracepoint__sys", "kfunc__",
                                             "kretfunc__"))}


def wait_for(fn, timeout, what, proc=None):
    """fn()'s first truthy value within `timeout` s (exceptions retried);
    fails early if `proc` (an lstrace process) exits meanwhile."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: lstrace exited with {proc.returncode}")
        try:
            last = fn()
            if last:
                return last
        except Exception as e:      # noqa: BLE001 - retried until timeout
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def left_over(before, timeout=5.0):
    """lstrace programs loaded since `before` that no live process holds (other
    lstrace sessions may run here too), waiting for the kernel's deferred free
    after our process exits."""
    end = time.monotonic() + timeout
    while True:
        new = lstrace_prog_ids() - before
        if new:
            new -= held_prog_ids()
        if not new or time.monotonic() > end:
            return new
        time.sleep(0.2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_state():
    """What lstrace must leave on the host as it found it: the kernel's
    /lib/modules tree (headers are pointed at, never linked), pinned BPF
    objects, dynamic trace events, and files named lstrace in /tmp and /run."""
    state = {}
    tree = Path("/lib/modules") / os.uname().release
    if tree.exists() or tree.is_symlink():
        for p in [tree, *tree.rglob("*")] if tree.is_dir() and not tree.is_symlink() else [tree]:
            state[str(p)] = os.readlink(p) if p.is_symlink() else "dir" if p.is_dir() else "file"
    for root in ("/sys/fs/bpf",):
        for p in Path(root).rglob("*") if Path(root).is_dir() else ():
            state[str(p)] = "pinned"
    for f in ("/sys/kernel/tracing/kprobe_events", "/sys/kernel/tracing/uprobe_events"):
        try:
            state[f] = Path(f).read_text()
        except OSError:
            pass
    for d in ("/tmp", "/run", "/dev/shm"):
        for p in Path(d).glob("*lstrace*"):
            if not p.name.startswith("lstrace-lab."):      # kernel-lab runs, not lstrace's
                state[str(p)] = "present"
    return state


def tracepoint_snapshot(taken=1.0, kernel=None, **counters):
    """A hand-built Snapshot of CPU 0, every tracepoint probe attached, holding `counters`."""
    from lstrace import probes
    from lstrace.snapshot import ProbeStatus, Snapshot
    st = [ProbeStatus(m.NAME, "tracepoint", "tracepoint", True) for m in probes.TRACEPOINT_MODULES]
    return Snapshot(taken=taken, cpus=[0], kernel={"generation": "B"} if kernel is None else kernel,
                    probes=st, **counters)
