"""`lstrace doctor` names each missing piece (kernel headers, BTF, tracefs, debugfs,
capabilities) in one line, and never with a traceback.  Each piece is taken away for
real: empty tmpfs over its mount point in a private mount namespace (unshare -m; the
host's mounts are untouched) or a capability dropped from the bounding set (setpriv)."""
import json
import shlex
import subprocess

import pytest

from support import ROOT, lstrace_cmd

pytestmark = pytest.mark.root


def doctor(hide=(), drop=(), as_json=True):
    """doctor with tmpfs over each path of `hide` and the capabilities `drop` dropped."""
    mounts = "".join(f"mount -t tmpfs none {shlex.quote(p)}; " for p in hide)
    priv = ["setpriv", "--bounding-set=" + ",".join(f"-{c.lower()}" for c in drop)] if drop else []
    cmd = shlex.join([*priv, *lstrace_cmd("doctor", *(["--json"] if as_json else []))])
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"{mounts}exec {cmd}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    return r


def missing(r):
    return {m["piece"]: m["text"] for m in json.loads(r.stdout)["missing"]}


def test_no_headers_at_all():
    """Issue 21 item 6: this was a KeyError 'headers_how' traceback."""
    r = doctor(hide=["/lib/modules", "/usr/src"])
    assert r.returncode == 0, r.stderr
    assert "BCC cannot compile" in missing(r)["headers"]
    text = doctor(hide=["/lib/modules", "/usr/src"], as_json=False)
    lines = [ln for ln in text.stdout.splitlines() if ln.startswith("missing headers: ")]
    assert len(lines) == 1 and "linux-headers" in lines[0], text.stdout


def test_no_btf_says_the_mount_in_one_line():
    r = doctor(hide=["/sys/kernel/btf"])
    assert r.returncode == 69 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(
        "lstrace: no BTF at /sys/kernel/btf/vmlinux:"), r.stderr
    assert "CONFIG_DEBUG_INFO_BTF" in r.stderr and "mount the host's /sys/kernel/btf" in r.stderr


def test_no_tracefs_nor_debugfs_and_no_sys_admin():
    """Without CAP_SYS_ADMIN lstrace cannot mount tracefs itself: the mount is missing."""
    r = doctor(hide=["/sys/kernel/tracing", "/sys/kernel/debug"], drop=["SYS_ADMIN"])
    m = missing(r)
    assert "mount the host's /sys/kernel/tracing" in m["tracefs"]
    assert "mount the host's /sys/kernel/debug" in m["debugfs"]
    assert "CAP_SYS_ADMIN" in m["capabilities"]
    assert all("\n" not in t for t in m.values())


def test_debugfs_mounted_is_not_missing():
    r = subprocess.run(["unshare", "-m", "sh", "-c",
                        "mount -t debugfs nodev /sys/kernel/debug && exec "
                        + shlex.join(lstrace_cmd("doctor", "--json"))],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "debugfs" not in missing(r)


def test_capability_missing():
    r = doctor(drop=["SYSLOG"])
    assert r.returncode == 0, r.stderr
    caps = missing(r)["capabilities"]
    assert "CAP_SYSLOG" in caps and "CAP_BPF" not in caps


def test_no_bpf_capability_is_one_line():
    r = doctor(drop=["BPF", "SYS_ADMIN"])
    assert r.returncode == 77 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
