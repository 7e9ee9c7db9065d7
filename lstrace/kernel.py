"""What the running kernel offers: release, BTF, local-storage generation,
prototypes, tracepoints and symbols.  Everything is read from the kernel
itself (BTF, kallsyms, tracefs), never guessed from the version string.
"""
import array
import bisect
import gzip
import os
import platform
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import btf as btfmod
from . import heap
from .errors import Unavailable

# local storage's recursion protection (kernel/bpf/bpf_task_storage.c); C: the series
# "Remove task and cgroup local storage percpu counters" (merged for v7.0)
GENERATIONS = {
    "A": "busy counter, no _recur helpers (5.13-6.1)",
    "B": "busy counters + _recur helpers (6.2-6.19)",
    "C": "rqspinlock in local storage, no busy counters (7.0+)",
}


def decide_generation(has_func, has_var):
    """From BTF, never the version string: `_recur` present -> B; busy VAR
    without `_recur` -> A; neither -> C."""
    if has_func("bpf_task_storage_get_recur"):
        return "B"
    if has_var("bpf_task_storage_busy"):
        return "A"
    return "C"


def tracefs_root():
    """Mount tracefs if nobody has (perf and BCC do the same)."""
    for p in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(f"{p}/events"):
            return p
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"nodev", b"/sys/kernel/tracing", b"tracefs", 0, None) == 0:
            return "/sys/kernel/tracing"
    except OSError:
        pass
    return None


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


class Kernel:
    """Facts about one kernel; `btf_path` and friends are overridable so
    tests (and users) can point lstrace at other files."""

    def __init__(self, btf_path="/sys/kernel/btf/vmlinux", kallsyms_path="/proc/kallsyms",
                 release=None):
        self.btf_path = btf_path
        self.kallsyms_path = kallsyms_path
        self.release = release or platform.release()

    @property
    def has_btf(self):
        return os.path.exists(self.btf_path)

    @cached_property
    def btf(self):
        if not self.has_btf:
            from .prereqs import btf as missing_btf
            raise Unavailable(missing_btf(self)["text"])
        try:
            return btfmod.BTF.load(self.btf_path)
        except (OSError, btfmod.BTFError) as e:
            raise Unavailable(f"cannot read BTF at {self.btf_path}: {e}")

    @cached_property
    def generation(self):
        return decide_generation(self.btf.has_func, self.btf.has_var)

    def prototype(self, func):
        return self.btf.prototype(func)

    def has_func(self, func):
        return self.btf.has_func(func)

    @cached_property
    def kallsyms(self):
        try:
            return Kallsyms.load(self.kallsyms_path)
        except OSError:
            return Kallsyms()

    @property
    def percpu_offsets_addr(self):
        """Address of __per_cpu_offset[], when kallsyms has data symbols
        (CONFIG_KALLSYMS_ALL); else 0.  Per-CPU variables are read through it."""
        return self.kallsyms.data.get("__per_cpu_offset", 0)

    def percpu_var_addr(self, name):
        """Address of a per-CPU variable lstrace can read (see
        percpu_offsets_addr); else None."""
        if self.percpu_offsets_addr and name in self.kallsyms.data and self.btf.has_var(name):
            return self.kallsyms.data[name]
        return None

    @cached_property
    def tracefs(self):
        return tracefs_root()

    def has_tracepoint(self, category, event):
        return bool(self.tracefs) and os.path.isdir(f"{self.tracefs}/events/{category}/{event}")

    @cached_property
    def possible_cpus(self):
        return _parse_cpu_list(Path("/sys/devices/system/cpu/possible").read_text())

    @cached_property
    def online_cpus(self):
        return _parse_cpu_list(Path("/sys/devices/system/cpu/online").read_text())

    @cached_property
    def preemption(self):
        """'none' / 'voluntary' / 'full' / 'lazy' as the kernel runs now: debugfs,
        else the preempt= boot argument, else the build's preemption model
        (/proc/config.gz, /boot/config-RELEASE), else 'unknown'."""
        try:
            text = Path("/sys/kernel/debug/sched/preempt").read_text()
            return text[text.index("(") + 1:text.index(")")]
        except (OSError, ValueError):
            pass
        try:
            for arg in Path("/proc/cmdline").read_text().split():
                if arg.startswith("preempt=") and arg[8:] in ("none", "voluntary", "full",
                                                              "lazy"):
                    return arg[8:]
        except OSError:
            pass
        models = {"CONFIG_PREEMPT_NONE=y": "none", "CONFIG_PREEMPT_VOLUNTARY=y": "voluntary",
                  "CONFIG_PREEMPT=y": "full", "CONFIG_PREEMPT_LAZY=y": "lazy",
                  "CONFIG_PREEMPT_RT=y": "full"}
        for path in ("/proc/config.gz", f"/boot/config-{self.release}"):
            try:
                opener = gzip.open if path.endswith(".gz") else open
                with opener(path, "rt") as f:
                    for line in f:
                        if line.strip() in models:
                            return models[line.strip()]
            except OSError:
                pass
        v = platform.version()
        return "full" if "PREEMPT " in v + " " and "PREEMPT_DYNAMIC" not in v else "unknown"

    def summary(self):
        return {"release": self.release, "generation": self.generation,
                "generation_text": GENERATIONS[self.generation], "btf": self.btf_path,
                "cpus_possible": len(self.possible_cpus), "cpus_online": len(self.online_cpus),
                "preemption": self.preemption,
                "kallsyms_all": bool(self.percpu_offsets_addr)}


def _parse_cpu_list(text):
    cpus = []
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            cpus.extend(range(int(a), int(b) + 1))
        elif part:
            cpus.append(int(part))
    return cpus
