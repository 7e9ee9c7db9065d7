"""The decoder turns lstrace's raw per-CPU map bytes into a Snapshot: tested
here without root or BPF, from bytes built the way the kernel lays them out
(one value per CPU, each padded to 8 bytes; the C structs' field order)."""
import array

from lstrace import counters, decode, layout, probes
from lstrace.snapshot import Snapshot

CPUS = [0, 1, 2]


def counters_bytes(lay, fill):
    """One CPU's struct counters: fill(block name, index) -> value."""
    words = array.array("Q", [0] * lay.words)
    for name, (off, n) in lay.offsets.items():
        for i in range(n):
            words[off + i] = fill(name, i)
    return words.tobytes()


def test_counters_decode_per_cpu_and_block():
    lay = counters.Layout(len(probes.HELPERS))
    raw = b"".join(counters_bytes(lay, lambda name, i, c=c: (c + 1) * 1000 + i
                                  if name != "guard_skips" else 7 + c) for c in CPUS)
    per_cpu = decode.split_percpu(raw, len(CPUS), lay.value_size)
    snap = Snapshot(taken=0, cpus=CPUS, kernel={}, probes=[])
    decode.counters(snap, lay, per_cpu, {"task_storage_get", "rqspinlock", "bpf_syscall"})
    no = len(layout.OUTCOMES)
    i = probes.helpers.NAMES.index("task_storage_get")
    for c in CPUS:
        assert snap.helper[("task_storage_get", c)] == {
            o: (c + 1) * 1000 + i * no + k for k, o in enumerate(layout.OUTCOMES)}
        assert snap.latency[("task_storage_get", c)][0] == (c + 1) * 1000 + i * layout.NSLOTS
        assert snap.guard_skips[c] == 7 + c
        assert snap.rq_wait[c] == [(c + 1) * 1000 + s for s in range(layout.NSLOTS)]
    assert ("cgrp_storage_get", 0) not in snap.helper          # not attached: absent
    assert not snap.busy_samples
    # rq[errno][kind][caller]: the last cell is ETIMEDOUT / the last kind / other
    nrq = len(layout.RQ_ERRNOS) * len(layout.RQ_KINDS) * len(layout.CALLERS)
    assert snap.rq_failures[(2, "ETIMEDOUT", layout.RQ_KINDS[-1], "other")] == 3000 + nrq - 1
    # sys[cmd][map type][errno]: the first cell is MAP_CREATE / none / EPERM
    assert snap.syscall_errors[(1, layout.CMD_NAMES[0], "none", "EPERM")] == 2000


def ring_bytes(events):
    """struct ring: head, then N_EVENTS struct event slots."""
    out = bytearray(decode.RING_SIZE)
    for i, (seq, ts, what, outcome, comm, ips) in enumerate(events):
        ips = list(ips) + [0] * (decode.STACK_DEPTH - len(ips))
        decode.EVENT.pack_into(out, 8 + i * decode.EVENT.size, seq, ts, what, outcome, comm, *ips)
    return bytes(out)


SYMS = {0x100: "bpf_prog_aaaaaaaaaaaaaaaa_lst_contention_end",     # lstrace's own
        0x200: "bpf_trace_run2", 0x300: "resilient_queued_spin_lock_slowpath",
        0x400: "bpf_res_spin_lock", 0x500: "bpf_prog_bbbbbbbbbbbbbbbb_run_skb",
        0x600: "bpf_test_run"}


def resolve(ip):
    return (SYMS[ip & ~0xff], ip & 0xff) if ip & ~0xff in SYMS else None


def test_events_name_program_and_caller_and_never_guess():
    rq = probes.EVENT_SOURCES.index("rqspinlock")
    cpu0 = ring_bytes([(1, 50, rq, layout.OUTCOMES.index("deadlock"), b"repro\0",
                        [0x110, 0x210, 0x310, 0x410, 0x510, 0x610]),
                       (2, 10, 0, layout.OUTCOMES.index("busy"), b"sched\0", [0x110, 0x9990])])
    cpu2 = ring_bytes([(7, 30, 0, 99, b"x" * 16, [])])
    rows = decode.event_rows([cpu0, ring_bytes([]), cpu2])
    assert decode.newest_seqs(rows, 3) == (2, 0, 7)
    snap = Snapshot(taken=0, cpus=[0, 4, 9], kernel={}, probes=[])
    decode.events(snap, rows, resolve, our_tags={"aaaaaaaaaaaaaaaa"})
    assert [(e.seq, e.cpu, e.source, e.outcome, e.comm, e.program, e.caller)
            for e in snap.events] == [
        (2, 0, "task_storage_get", "busy", "sched", "", "unknown"),   # no symbol covers 0x9990
        (7, 9, "task_storage_get", layout.OUTCOMES[-1], "x" * 16, "", ""),
        (1, 0, "rqspinlock", "deadlock", "repro", "run_skb", "bpf_res_spin_lock")]


def test_attribute_names_programs_by_their_tag_symbol_only():
    """bpf_prog_<16-hex tag>_<name> is a program; bpf_prog_test_run_tracing is a
    kernel function (skipped like the tracing machinery); lstrace's own tags skip."""
    syms = {1: "bpf_prog_test_run_tracing", 2: "bpf_prog_0123456789abcdef_lst_exit",
            3: "bpf_prog_fedcba9876543210_sched_tick", 4: "bpf_local_storage_update"}
    resolve = lambda ip: (syms[ip], 0) if ip in syms else None      # noqa: E731
    assert decode.attribute((1, 2, 3, 4), resolve, {"0123456789abcdef"}) == \
        ("sched_tick", "bpf_local_storage_update")
    assert decode.attribute((1, 4), resolve, set()) == ("", "bpf_local_storage_update")
    assert decode.attribute((9,), resolve, set()) == ("", "unknown")
