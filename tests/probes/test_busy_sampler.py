"""The busy_sampler probe (lstrace/probes/busy_sampler.py): samples of the
local-storage busy counters per CPU (generations A and B)."""
from lstrace import probes
from lstrace.probes import busy_sampler
from support import tracepoint_snapshot


def test_public_names_kept():
    assert probes.tracepoint("busy_sampler") is busy_sampler.PROBE
    assert [n for n, _ in busy_sampler.blocks(len(probes.HELPERS))] == ["busy_samples",
                                                                         "busy_held"]


def test_delta_subtracts_its_samples():
    s = tracepoint_snapshot(busy_samples={0: (5, {"task": 1, "cgrp": 0})})
    d = s.delta(tracepoint_snapshot(taken=0.0, kernel={},
                                    busy_samples={0: (1, {"task": 1, "cgrp": 0})}))
    assert d.busy_samples == {0: (4, {"task": 0, "cgrp": 0})}
