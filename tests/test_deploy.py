"""The deployment files work as written: the systemd unit's command is where
`scripts/install.sh --system` puts it (systemd-analyze verify), and the
DaemonSet is valid against the Kubernetes schemas (kubernetes-validate)."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import ROOT

UNIT = ROOT / "deploy" / "lstrace.service"
DAEMONSET = ROOT / "deploy" / "daemonset.yaml"
INSTALLED_UNIT = Path("/etc/systemd/system/lstrace.service")


def exec_start():
    return re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.M).group(1)


def test_unit_runs_the_command_install_sh_puts_there():
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert re.search(rf'ln -sfn "\$\(pwd\)/\.venv/bin/lstrace" {re.escape(exec_start())}$',
                     install, re.M), f"install.sh --system does not install {exec_start()}"


@pytest.mark.root
@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze missing")
def test_systemd_analyze_verify_after_install_system():
    """Install for real (the command and the unit), verify, and put the host back."""
    cmd = Path(exec_start())
    had = {p: p.exists() or p.is_symlink() for p in (cmd, INSTALLED_UNIT)}
    try:
        r = subprocess.run([str(ROOT / "scripts" / "install.sh"), "--system"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert os.access(cmd, os.X_OK) and cmd.resolve() == (ROOT / ".venv/bin/lstrace")
        v = subprocess.run(["systemd-analyze", "verify", str(INSTALLED_UNIT)],
                           capture_output=True, text=True, timeout=60)
        assert v.returncode == 0 and "lstrace.service" not in v.stdout + v.stderr, \
            v.stdout + v.stderr
        help_ = subprocess.run([str(cmd), "--help"], capture_output=True, text=True, timeout=60)
        assert help_.returncode == 0 and "serve" in help_.stdout
    finally:
        for p, existed in had.items():
            if not existed and (p.exists() or p.is_symlink()):
                p.unlink()


def test_install_sh_refuses_unknown_options():
    r = subprocess.run([str(ROOT / "scripts" / "install.sh"), "--sytem"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode in (2, 77), r.stderr      # 77: not root, checked after the options
    if r.returncode == 2:
        assert "unknown option --sytem" in r.stderr


def test_daemonset_is_valid_kubernetes():
    kv = pytest.importorskip("kubernetes_validate",
                             reason="kubernetes-validate (test extra) not installed")
    import yaml         # kubernetes-validate's dependency
    docs = [d for d in yaml.safe_load_all(DAEMONSET.read_text()) if d]
    assert {d["kind"] for d in docs} == {"Namespace", "DaemonSet"}
    for d in docs:
        kv.validate(d, kv.latest_version(), strict=True)
    # and the validator really checks: a misspelt field is refused
    bad = [d for d in docs if d["kind"] == "DaemonSet"][0]
    bad["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)
