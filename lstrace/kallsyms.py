"""The kernel's text symbols (/proc/kallsyms), compact, for turning addresses
into functions: vmlinux and modules read once, JIT-ed BPF programs re-read
(refresh_bpf), data symbols by name (per-CPU variables)."""
import array
import bisect
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from . import heap

# Section-end markers cover no code: an address after one is in no function
# (the BPF JIT area lies past _einittext; it once resolved to "_einittext").
TEXT_END_MARKERS = re.compile(r"^(_etext|_einittext|_end|__\w*text_end|__indirect_thunk_end)$")
# the last symbol has no next one to end it: farther than this is nobody's code
MAX_LAST_SPAN = 1 << 20
# ftrace's trampolines ([__builtin__ftrace], in the module area beside BPF
# programs) are at most a page: an address past one is not in it (a BPF
# program loaded since the symbols were read, say)
TRAMPOLINE_SPAN = {"ftrace_trampoline": 1 << 12}


# BPF programs come and go: their [bpf] symbols are re-read at most this often
BPF_REFRESH_S = 2.0
# unloaded programs' symbols kept for the events they left (refresh_bpf)
MAX_DEPARTED = 256


def _floor(addrs, addr):
    return bisect.bisect_right(addrs, addr) - 1


class Names(Sequence):
    """Symbol names as one bytes blob and an array of start offsets: ~200k
    names as Python str objects cost ~25 MB of the daemon's heap, this ~5 MB."""
    __slots__ = ("blob", "starts")

    def __init__(self, names=()):
        blob, starts = bytearray(b"\n"), array.array("I")      # blobs stay < 4 GiB
        for n in names:
            starts.append(len(blob))
            blob += n if isinstance(n, bytes) else n.encode()
            blob += b"\n"
        self.blob, self.starts = bytes(blob), starts

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self.starts)
        start = self.starts[i]
        return self.blob[start:self.blob.index(b"\n", start)].decode()

    def __iter__(self):
        return iter(self.blob[1:-1].decode().split("\n") if self.starts else ())

    def index(self, name, *_):
        pos = self.blob.find(b"\n" + name.encode() + b"\n")
        if pos < 0:
            raise ValueError(f"{name!r} is not a symbol")
        return bisect.bisect_left(self.starts, pos + 1)


class SymbolMap(Mapping):
    """name -> address, compact (Names sorted by name + an array of addresses)."""
    __slots__ = ("names", "addrs")

    def __init__(self, pairs=()):
        pairs = dict(pairs) if not isinstance(pairs, dict) else pairs
        keys = sorted(pairs)
        self.names = Names(keys)
        self.addrs = array.array("Q", (pairs[k] for k in keys))

    def __getitem__(self, name):
        i = bisect.bisect_left(self.names, name)
        if i < len(self.names) and self.names[i] == name:
            return self.addrs[i]
        raise KeyError(name)

    def __len__(self):
        return len(self.addrs)

    def __iter__(self):
        return iter(self.names)


@dataclass
class Kallsyms:
    """Text symbols sorted by address, for turning addresses into ranges:
    vmlinux and modules (read once), JIT-ed BPF programs ([bpf]:
    bpf_prog_<tag>_<name>, re-read by refresh_bpf()).  Data symbols (vmlinux
    only) appear only with CONFIG_KALLSYMS_ALL.  Stored compactly (arrays and
    byte blobs, not 200k Python objects): the daemon keeps them for as long as
    it runs."""
    addrs: Sequence = field(default_factory=list)
    names: Sequence = field(default_factory=list)
    data: Mapping = field(default_factory=dict)
    bpf_addrs: list = field(default_factory=list)
    bpf_names: list = field(default_factory=list)
    path: str = "/proc/kallsyms"
    bpf_read_at: float = 0.0

    @classmethod
    def load(cls, path="/proc/kallsyms"):
        ks = cls(path=str(path))
        addrs, names, data, bpf = array.array("Q"), [], {}, []
        f = ks._reader()          # kept open: refresh_bpf re-reads it (see _reader)
        raw = f.read()
        # one pass over short-lived line objects; what stays is two arrays and blobs
        for line in raw.split(b"\n"):
            parts = line.split()
            if len(parts) < 3:
                continue
            addr = int(parts[0], 16)
            if addr == 0:
                continue
            kind = parts[1]
            if kind in b"tTwW":
                if parts[-1] == b"[bpf]":
                    bpf.append((addr, parts[2].decode()))
                else:
                    addrs.append(addr)
                    names.append(parts[2])
            elif len(parts) == 3:                   # vmlinux data, not modules'
                data[parts[2].decode()] = addr
        del raw
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        ks.addrs = array.array("Q", (addrs[i] for i in order))
        ks.names = Names(names[i] for i in order)
        del order, names, addrs
        ks.data = SymbolMap(data)
        ks._set_bpf(bpf)
        heap.release()      # the parse's freed heap
        return ks

    def _set_bpf(self, rows):
        rows.sort()
        self.bpf_addrs = [a for a, _ in rows]
        self.bpf_names = [n for _, n in rows]
        self.bpf_read_at = time.monotonic()

    def refresh_bpf(self, min_interval=BPF_REFRESH_S):
        """Re-read the BPF programs' symbols (only those lines: ~10x cheaper than
        a full load), at most every `min_interval` s.  True if re-read."""
        if time.monotonic() - self.bpf_read_at < min_interval:
            return False
        rows = []
        try:
            f = self._reader()
            f.seek(0)
            for line in f.read().split(b"\n"):
                if line.endswith(b"[bpf]"):
                    parts = line.split()
                    if parts[1] in b"tT" and int(parts[0], 16):
                        rows.append((int(parts[0], 16), parts[2].decode()))
        except OSError:
            return False
        self._set_bpf(self._with_departed(rows))
        return True

    def _reader(self):
        """/proc/kallsyms, opened once and re-read from the start: the kernel
        decides at open time whether the reader sees addresses (CAP_SYSLOG),
        and `lstrace serve` drops that capability after start-up; the file
        load() opened still shows them (an unpickled copy opens it at once)."""
        f = self.__dict__.get("_fh")
        if f is None:
            f = self.__dict__["_fh"] = open(self.path, "rb")
        return f

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_fh"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.path == "/proc/kallsyms":
            try:
                self._reader()
            except OSError:
                pass

    def _with_departed(self, rows):
        """The new [bpf] rows plus the programs unloaded since the last read,
        where no new program took their place: failure events recorded while
        such a program ran (the ring keeps them) still name it, instead of the
        program below its address.  Bounded: at most MAX_DEPARTED kept."""
        new = {a for a, _ in rows}
        gone = [(a, n) for a, n in zip(self.bpf_addrs, self.bpf_names) if a not in new]
        return rows + gone[-MAX_DEPARTED:]

    @property
    def readable(self):
        return bool(len(self.addrs))

    def range_of(self, name):
        """[start, end) of a text symbol, end = the next symbol's start."""
        try:
            i = self.names.index(name)
        except ValueError:
            return None
        end = self.addrs[i + 1] if i + 1 < len(self.addrs) else self.addrs[i] + 1
        return self.addrs[i], end

    def resolve(self, addr):
        """(symbol, offset) of the function containing addr, or None when no
        symbol covers it: before the first, past a section-end marker, or far
        past the last symbol."""
        best = None
        for addrs, names in ((self.addrs, self.names), (self.bpf_addrs, self.bpf_names)):
            i = _floor(addrs, addr)
            if i < 0 or (best and addrs[i] <= best[0]):
                continue
            name = names[i]
            span = TRAMPOLINE_SPAN.get(name, MAX_LAST_SPAN if i + 1 == len(addrs) else None)
            past = span is not None and addr - addrs[i] >= span
            best = (addrs[i], None if past or TEXT_END_MARKERS.match(name) else name)
        if not best or best[1] is None:
            return None
        return best[1], addr - best[0]
