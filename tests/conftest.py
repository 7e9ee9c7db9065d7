import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def pytest_collection_modifyitems(config, items):
    """Tests marked root load real BPF into this host's kernel: skip them,
    with the reason, when not root (CI runs as root and runs them all)."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: loads real BPF programs into this kernel")
    for item in items:
        if "root" in item.keywords or "lab" in item.keywords:
            item.add_marker(skip)


def lstrace_cmd(*args):
    return [PY, "-m", "lstrace", *args]


def run_lstrace(*args, timeout=120, **kw):
    return subprocess.run(lstrace_cmd(*args), capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, **kw)


def lstrace_programs():
    """Names of lstrace's programs still loaded (bpftool prog list)."""
    if not shutil.which("bpftool"):
        return []
    out = subprocess.run(["bpftool", "prog", "list"], capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        if " name " in line:
            name = line.split(" name ")[1].split()[0]
            if name.startswith(("lst_", "tracepoint__sys", "kfunc__", "kretfunc__")):
                names.append(name)
    return names
