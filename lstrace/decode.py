"""Raw bytes of lstrace's per-CPU maps -> Snapshot fields.

Pure: no BPF, no root, no kernel.  Session reads the maps (one lookup each,
every CPU's value) and hands the bytes here; tests/test_decode.py feeds it
synthetic bytes.  The event ring's shape is defined here and reaches the C
code as -D defines (program.defines), like the counter layout (layout.py).
"""
import array
import struct

from . import arch, probes
from .layout import OUTCOMES
from .snapshot import FailureEvent

N_EVENTS, STACK_DEPTH = 16, 8      # recent failure events per CPU, stack frames each
# struct event, the one declaration: (field, C type, array length or 0); the C
# struct (c_structs) and the Python unpacker (EVENT) are both made from it
EVENT_FIELDS = (("seq", "u64", 0), ("ts", "u64", 0),
                ("what", "u32", 0),        # index into probes.EVENT_SOURCES
                ("outcome", "u32", 0), ("comm", "char", 16), ("ips", "u64", STACK_DEPTH))
_FMT = {"u64": "Q", "u32": "I"}
EVENT = struct.Struct("<" + "".join(f"{n}s" if t == "char" else _FMT[t] * (n or 1)
                                    for _, t, n in EVENT_FIELDS))
RING_SIZE = 8 + N_EVENTS * EVENT.size    # struct ring: head, ev[N_EVENTS]


def c_structs():
    """struct event and struct ring for bpf/lstrace.bpf.c."""
    fields = "".join(f"\t{t} {name}{f'[{n}]' if n else ''};\n" for name, t, n in EVENT_FIELDS)
    return (f"struct event {{\n{fields}}};\n"
            f"struct ring {{\n\tu64 head;\n\tstruct event ev[{N_EVENTS}];\n}};\n")
# frames that are lstrace's or the tracing machinery's, not the lock's user
HOOK_PREFIXES = ("bpf_prog_", "bpf_trampoline", "__bpf_trace", "bpf_trace_run", "__traceiter",
                 "bpf_get_stack", "____bpf_get_stack", "bpf_get_stackid", "kretprobe",
                 "arch_rethook", "rethook", "perf_", "resilient_queued_spin_lock_slowpath",
                 "trace_contention", "__bpf_prog_enter", "__bpf_prog_exit",
                 "ftrace") + arch.all_entry_frames()


def _event_source(what):
    """The probe an event names: the BPF side writes an index into the probes'
    EVENT_SOURCES (lstrace/probes/__init__.py)."""
    return probes.EVENT_SOURCES[what] if what < len(probes.EVENT_SOURCES) else "unknown"


def split_percpu(raw, ncpu, size):
    """One BPF_MAP_LOOKUP_ELEM of a per-CPU array returns every CPU's value,
    each padded to 8 bytes."""
    stride = (size + 7) // 8 * 8
    return [raw[i * stride:i * stride + size] for i in range(ncpu)]


def counters(snap, lay, per_cpu_raw, attached, latency=True):
    """Fill snap's counter fields from each CPU's `struct counters` bytes.
    Without `latency` (counting mode) the histograms stay absent."""
    for cpu, raw in zip(snap.cpus, per_cpu_raw):
        _cpu_counters(snap, cpu, lay, array.array("Q", raw), attached, latency)


def _cpu_counters(snap, cpu, lay, words, attached, latency):
    for m in probes.MODULES:
        m.decode(snap, cpu, lay, words, attached, latency)
    snap.guard_skips[cpu] = lay.block(words, "guard_skips")[0]


def event_rows(per_cpu_raw):
    """[(cpu index, seq, ts, what, outcome, comm, ips)] of every slot of every ring."""
    rows = []
    for c, raw in enumerate(per_cpu_raw):
        for i in range(N_EVENTS):
            seq, ts, what, outcome, comm, *ips = EVENT.unpack_from(raw, 8 + i * EVENT.size)
            rows.append((c, seq, ts, what, outcome, comm, tuple(ips)))
    return rows


def newest_seqs(rows, ncpu):
    """The newest event's seq on each CPU (0: none): what changed since a snapshot."""
    newest = [0] * ncpu
    for c, seq, *_ in rows:
        newest[c] = max(newest[c], seq)
    return tuple(newest)


def events(snap, rows, resolve, our_tags):
    """Append a FailureEvent per used slot; `resolve(ip)` -> (symbol, offset) or
    None; programs whose tag is in `our_tags` are lstrace's own."""
    for c, seq, ts, what, outcome, comm, ips in rows:
        if not seq:
            continue
        prog, caller = attribute(ips, resolve, our_tags)
        snap.events.append(FailureEvent(
            seq, snap.cpus[c], ts, _event_source(what),
            OUTCOMES[min(outcome, len(OUTCOMES) - 1)],
            comm.split(b"\0")[0].decode(errors="replace"), prog, caller))
    snap.events.sort(key=lambda e: e.ts_ns)


def _prog_symbol(name):
    """(tag, program name) of a JITed program's symbol bpf_prog_<16 hex digits of
    its tag>_<name>; None for anything else, e.g. bpf_prog_test_run_tracing."""
    parts = name.split("_", 3)
    if len(parts) == 4 and parts[:2] == ["bpf", "prog"] and len(parts[2]) == 16 and all(
            c in "0123456789abcdef" for c in parts[2]):
        return parts[2], parts[3]
    return None


def attribute(ips, resolve, our_tags):
    """(calling BPF program, kernel caller) of one failure's stack.  A caller
    no symbol covers is "unknown", never the nearest symbol."""
    prog, caller, unresolved = "", "", False
    for ip in ips:
        sym = resolve(ip) if ip else None
        if not sym:
            unresolved = unresolved or bool(ip)
            continue
        name = sym[0]
        tagged = _prog_symbol(name)
        if tagged:
            if not prog and tagged[0] not in our_tags:
                prog = tagged[1]
        elif not caller and not name.startswith(HOOK_PREFIXES):
            caller = name
    return prog, caller or ("unknown" if unresolved else "")
