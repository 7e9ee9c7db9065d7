"""The shape of lstrace's per-CPU counters, made from the probes' blocks.

All counters of one CPU live in one `struct counters` value of a single-slot
BPF_PERCPU_ARRAY: one BPF_MAP_LOOKUP_ELEM returns every CPU's counters, and
the BPF side needs no hash map (hash maps take rqspinlocks, the very locks
lstrace watches).  Each probe module (lstrace/probes/) declares its blocks;
the dimensions reach the C code as -D defines (`cflags`).
"""
from . import probes
from .layout import OUTCOMES


class Layout:
    """Offsets (in u64 words) of each counter block in one CPU's value, and the
    C `struct counters` generated from the same list (c_struct)."""

    def __init__(self, nprobes):
        self.nprobes = nprobes
        # (block, its C dimensions as (define, size) pairs); order = memory order:
        # each probe module's blocks (lstrace/probes/), then the core's
        self.blocks = [b for m in probes.MODULES for b in m.blocks(nprobes)]
        self.blocks.append(("guard_skips", ()))     # the nesting guard's skips (core)
        self.offsets, pos = {}, 0
        for name, dims in self.blocks:
            n = 1
            for _, size in dims:
                n *= size
            self.offsets[name] = (pos, n)
            pos += n
        self.words = pos

    def c_struct(self):
        """`struct counters` for bpf/lstrace.bpf.c, in the blocks' order."""
        fields = "".join(f"\tu64 {name}{''.join(f'[{d}]' for d, _ in dims)};\n"
                         for name, dims in self.blocks)
        return f"struct counters {{\n{fields}}};\n"

    @property
    def value_size(self):
        return self.words * 8

    def cflags(self):
        """-D defines that give the C code the same shape."""
        d = {define: size for _, dims in self.blocks for define, size in dims}
        for i, o in enumerate(OUTCOMES):
            d[f"OUT_{o.upper()}"] = i
        return [f"-D{k}={v}" for k, v in d.items()]

    def block(self, words, name):
        off, n = self.offsets[name]
        return words[off:off + n]
