"""Each probe is one module (lstrace/probes/): every module has the whole
interface the core iterates, its counter blocks make the Layout, its C
fragment defines the programs it attaches, and the core names no probe
(no root).  Everything here iterates the registry (lstrace.probes.MODULES) and
names no probe: what one probe declares is checked in tests/probes/test_<probe>.py."""
import ast
import re
from pathlib import Path

import pytest

from lstrace import counters, probes, program

ROOT = Path(__file__).resolve().parent.parent
INTERFACE = ("NAMES", "plan", "BLIND_SPOT_TEXT", "blind_spots", "blocks", "C_FRAGMENT",
             "defines", "glue", "attach_points", "MISSED_CALLS", "decode", "families",
             "event_keys", "event_counts", "cpu_counts", "cpu_failures", "top_row",
             "TOP_SECTION", "NO_HIST")


@pytest.mark.parametrize("m", probes.MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_module_has_the_interface(m):
    missing = [a for a in INTERFACE if not hasattr(m, a)]
    if m.TOP_SECTION:
        missing += [a for a in ("top_rows", "top_cells") if not hasattr(m, a)]
    if not m.NO_HIST:
        missing += [a for a in ("hist_what", "hist_slots") if not hasattr(m, a)]
    assert not missing
    assert m.NAMES and all(probes.module_of(n) is m for n in m.NAMES)


def test_every_probe_name_is_one_modules():
    names = [n for m in probes.MODULES for n in m.NAMES]
    assert probes.ALL_NAMES == tuple(names) and len(set(names)) == len(names)
    assert set(probes.DEFAULT_NAMES) <= set(names)


@pytest.mark.parametrize("m", probes.TRACEPOINT_MODULES, ids=lambda m: m.NAME)
def test_tracepoint_module_serves_its_probe(m):
    assert m.NAME in m.NAMES and probes.tracepoint(m.NAME) is m.PROBE
    assert m.PROBE in probes.TRACEPOINTS


@pytest.mark.parametrize("m", probes.MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_probe_has_its_test_file(m):
    """tests/probes/test_<probe>.py: what this probe declares, checked where it is."""
    assert (ROOT / "tests" / "probes" / f"test_{m.__name__.rsplit('.', 1)[1]}.py").exists()


def test_layout_is_the_modules_blocks():
    lay = counters.Layout(len(probes.HELPERS))
    mine = [b for m in probes.MODULES for b in m.blocks(len(probes.HELPERS))]
    assert lay.blocks == mine + [("guard_skips", ())]
    names = [n for n, _ in lay.blocks]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("m", probes.TRACEPOINT_MODULES, ids=lambda m: m.NAME)
def test_fragment_defines_what_is_attached(m):
    text = "".join((program.source_dir() / "probes" / f).read_text()
                   for f in program.fragments(m))
    for _kind, _event, fn in m.PROBE.programs:
        assert re.search(rf"^int {fn}\(", text, re.M), fn


def test_core_names_no_probe():
    """Probe names appear in the core only where a comment says why (README
    "How to add a probe"): string literals equal to a probe name, per file."""
    # the core iterates probes.MODULES; what is left is not a probe's name:
    allowed = {"plan.py": ["rqspinlock", "rqspinlock"]}   # htab_lock: the bucket lock's kind
    names = set(probes.ALL_NAMES)
    found = {}
    for path in sorted((ROOT / "lstrace").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names:
                found.setdefault(path.name, []).append(node.value)
    assert found == allowed
