"""The rqspinlock_kfunc probe (lstrace/probes/rqspinlock_kfunc.py): every failed
bpf_res_spin_lock*() kfunc, through a trampoline this host forbids: its counts
are checked in the lab guests (tests/guest/test_rqspinlock_kfunc.py)."""
from lstrace import probes
from lstrace.probes import rqspinlock_kfunc


def test_public_names_kept():
    assert probes.tracepoint("rqspinlock_kfunc") is rqspinlock_kfunc.PROBE
    assert [n for n, _ in rqspinlock_kfunc.blocks(len(probes.HELPERS))] == ["rqk"]
