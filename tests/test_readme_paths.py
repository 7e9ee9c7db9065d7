"""Every file or directory of this repository the README names exists (the
"How to add a probe" example's files are the ones it asks you to write)."""
import re
from pathlib import Path

from test_adding_a_probe import example_files

ROOT = Path(__file__).resolve().parent.parent
TOP = ("lstrace", "bpf", "tests", "benchmarks", "dashboards", "deploy", "scripts", ".ci")


def test_readme_names_only_what_exists():
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(rf"`((?:{'|'.join(map(re.escape, TOP))})/[\w./-]*)`", text))
    missing = sorted(p for p in named - set(example_files())
                     if "*" not in p and not (ROOT / p).exists())
    assert not missing, missing
