"""Adding a probe edits no existing file: README's "How to add a probe" example,
written into a copy of the checkout, loads on this host and shows up in every
command.

The three files (module, C fragment, test) are taken from the README's code
blocks, so the walk-through users read is the one that is proven.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parent.parent
NAME = "forks"


def example_files():
    """{path: text} of the README section's code blocks, each named by the
    `path` that opens the paragraph before it."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## How to add a probe", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^`([\w/.]+)`,[^\n]*(?:\n(?!```)[^\n]*)*\n```\w*\n(.*?)^```",
                        section, re.M | re.S)
    return dict(blocks)


# what a checkout holds besides its files: git's data, the venv, caches
NOT_CHECKOUT = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info",
                                      ".pytest_cache")


def checkout_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def digest(root, files):
    return {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """A copy of the checkout plus the example's files, nothing else changed."""
    dst = tmp_path_factory.mktemp("copy") / "checkout"
    shutil.copytree(ROOT, dst, ignore=NOT_CHECKOUT)
    files = checkout_files(dst)
    before = digest(dst, files)
    added = example_files()
    assert sorted(added) == [f"bpf/probes/{NAME}.bpf.c", f"lstrace/probes/{NAME}.py",
                             f"tests/probes/test_{NAME}.py"]
    for f, text in added.items():
        assert not (dst / f).exists(), f"{f} already exists in the checkout"
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        (dst / f).write_text(text)
    assert digest(dst, files) == before
    return dst


FORKER = """
import os
while True:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
"""


@pytest.fixture()
def forking():
    """Processes being created while a command runs: counts to see."""
    p = subprocess.Popen([sys.executable, "-c", FORKER])
    yield
    p.kill()
    p.wait()


def run(copy, *args, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(copy))
    r = subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r.stdout


def test_the_copy_imports_its_own_package(copy):
    out = run(copy, "-c", "import lstrace.probes as p; print(p.__file__); "
                          "print(' '.join(p.ALL_NAMES))")
    path, names = out.splitlines()
    assert path.startswith(str(copy)) and NAME in names.split()


def test_its_own_test_passes(copy):
    out = run(copy, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/probes/test_{NAME}.py")
    assert "1 passed" in out


def test_serve_once_exports_its_counts(copy, forking):
    # --once reads the counters right after attaching: on a loaded machine the
    # forking process may not have run in between, so a few tries
    for _ in range(5):
        out = run(copy, "-m", "lstrace", "serve", "--once")
        rows = [line for line in out.splitlines() if line.startswith(f"lstrace_{NAME}_total{{")]
        assert rows, out[-3000:]
        if sum(float(r.rsplit(" ", 1)[1]) for r in rows) > 0:
            return
    pytest.fail(f"no process created while serve --once ran: {rows}")


def test_top_json_has_its_section(copy, forking):
    out = run(copy, "-m", "lstrace", "top", "--json", "--once", "-i", "0.5")
    model = json.loads(out.splitlines()[-1])
    assert sum(r["total"] for r in model[NAME]) > 0, model[NAME]
    assert NAME in [p["probe"] for p in model["probes"]]


def test_doctor_json_plans_it(copy):
    report = json.loads(run(copy, "-m", "lstrace", "doctor", "--json"))
    mine = [p for p in report["probes"] if p["name"] == NAME]
    assert mine and mine[0]["mode"] == "tracepoint", mine
