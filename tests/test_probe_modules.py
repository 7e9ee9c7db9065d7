"""Each probe is one module (lstrace/probes/): every module has the whole
interface the core iterates, its counter blocks make the Layout, its C
fragment defines the programs it attaches, and the core names no probe
(no root)."""
import ast
import re
from pathlib import Path

import pytest

from lstrace import counters, layout, probes, program
from lstrace.snapshot import ProbeStatus, Snapshot

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
    assert all(probes.module_of(n, "tracepoint" if m is not probes.helpers else "helper") is m
               for n in m.NAMES)


def test_public_names_kept():
    assert probes.HELPERS is probes.helpers.HELPERS
    assert [t.name for t in probes.TRACEPOINTS] == ["rqspinlock", "rqspinlock_kfunc",
                                                    "bpf_syscall", "busy_sampler"]
    assert probes.ALL_NAMES == tuple(h.name for h in probes.HELPERS) + (
        "rqspinlock", "rqspinlock_kfunc", "bpf_syscall", "busy_sampler")
    assert probes.bpf_syscall.SYSCALL_ARCH["x86_64"]["func"] == "__x64_sys_bpf"
    assert probes.tracepoint("rqspinlock").programs[0][2] == "lst_contention_begin"


def test_layout_is_the_modules_blocks():
    lay = counters.Layout(len(probes.HELPERS))
    mine = [b for m in probes.MODULES for b in m.blocks(len(probes.HELPERS))]
    assert lay.blocks == mine + [("guard_skips", ())]
    assert [n for n, _ in lay.blocks] == ["helper", "lat", "rq", "rq_wait", "rqk", "sys",
                                          "busy_samples", "busy_held", "guard_skips"]


@pytest.mark.parametrize("m", probes.TRACEPOINT_MODULES, ids=lambda m: m.NAME)
def test_fragment_defines_what_is_attached(m):
    text = (program.source_dir() / "probes" / m.C_FRAGMENT).read_text()
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


def test_decode_top_and_metrics_go_through_the_modules():
    """A snapshot with every tracepoint probe's counters: each module's part shows."""
    st = [ProbeStatus(m.NAME, "tracepoint", "tracepoint", True) for m in probes.TRACEPOINT_MODULES]
    s = Snapshot(taken=1.0, cpus=[0], kernel={"generation": "B"}, probes=st,
                 rq_failures={(0, "EDEADLK", "AA", "htab"): 2},
                 syscall_errors={(0, "MAP_UPDATE_ELEM", "hash", "EBUSY"): 3},
                 busy_samples={0: (5, {"task": 1, "cgrp": 0})})
    counts = s.cpu_counts()[0]
    assert counts == {"calls": 0, "busy": 0, "deadlock": 2, "timeout": 0, "failures": 2,
                      "syscall_errors": 3, "aa": 2}
    assert s.per_cpu_totals()[0] == {"calls": 0, "busy": 0, "deadlock": 2, "timeout": 0,
                                     "failures": 2}
    d = s.delta(Snapshot(taken=0.0, cpus=[0], kernel={}, probes=st,
                         busy_samples={0: (1, {"task": 1, "cgrp": 0})}))
    assert d.busy_samples == {0: (4, {"task": 0, "cgrp": 0})} and d.rq_failures == s.rq_failures
