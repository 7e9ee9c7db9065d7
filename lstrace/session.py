"""The API every command shares: start probes -> read snapshots -> stop.

    with Session(probes=["rqspinlock"]) as s:
        snap = s.snapshot()

Start-up checks turn each missing prerequisite (root, BCC, BTF, headers) into
one clear error; a probe that fails to attach is reported in the snapshot and
the others keep running.
"""
import ctypes
import os
import time

from . import bpfsys, decode, probes
from . import headers as headersmod
from . import plan as planmod
from . import program
from .errors import NoProbeAttached, PermissionDenied, Unavailable
from .kernel import Kernel
from .snapshot import ProbeStatus, ProgramStats, Snapshot

CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39


def effective_caps():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def check_privileges():
    caps = effective_caps()
    has = lambda c: bool(caps & (1 << c))  # noqa: E731
    if os.geteuid() == 0 and has(CAP_SYS_ADMIN):
        return
    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return
    raise PermissionDenied("lstrace needs root (or CAP_BPF and CAP_PERFMON) to load BPF "
                           "programs: run it with sudo")


def import_bcc():
    try:
        import bcc
    except ImportError:
        raise Unavailable("BCC is not installed for this Python: apt-get install python3-bpfcc "
                          "(Debian/Ubuntu; the PyPI package named bcc is something else) and "
                          "use a venv made with --system-site-packages")
    return bcc


def prepare_headers(kernel):
    h = headersmod.find(kernel.release)
    if h is None:
        raise Unavailable(f"no kernel headers for {kernel.release} and none to fall back to: "
                          "install linux-headers-$(uname -r), or any linux-headers package "
                          "(scripts/install.sh does this)")
    return h


# BCC's attach and detach calls per attach kind: (bpf, event, function)
_ATTACH = {
    "kfunc": lambda b, ev, fn: b.attach_kfunc(fn_name=fn),
    "kretfunc": lambda b, ev, fn: b.attach_kretfunc(fn_name=fn),
    "kprobe": lambda b, ev, fn: b.attach_kprobe(event=ev, fn_name=fn),
    "kretprobe": lambda b, ev, fn: b.attach_kretprobe(event=ev, fn_name=fn, maxactive=64),
    "raw_tp": lambda b, ev, fn: b.attach_raw_tracepoint(tp=ev, fn_name=fn),
    "tracepoint": lambda b, ev, fn: b.attach_tracepoint(tp=ev, fn_name=fn),
}
_DETACH = {
    "kfunc": lambda b, ev, fn: b.detach_kfunc(fn_name=fn),
    "kretfunc": lambda b, ev, fn: b.detach_kretfunc(fn_name=fn),
    "kprobe": lambda b, ev, fn: b.detach_kprobe(event=ev, fn_name=fn),
    "kretprobe": lambda b, ev, fn: b.detach_kretprobe(event=ev, fn_name=fn),
    "raw_tp": lambda b, ev, fn: b.detach_raw_tracepoint(tp=ev),
    "tracepoint": lambda b, ev, fn: b.detach_tracepoint(tp=ev),
}


def _detach_point(b, point):
    kind, event, fn = point
    _DETACH[kind](b, event.encode(), fn.encode())


def compile_bcc(text, cflags=(), headers=None, cls=None):
    """A BCC module compiled against `headers` (default: this kernel's, or the
    nearest), touching nothing on the host: lstrace's programs and the tests'
    own BCC programs compile the same way."""
    bcc = import_bcc()
    headers = headers or prepare_headers(Kernel())
    text = text.encode() if isinstance(text, str) else text
    with headers.for_bcc():
        return (cls or bcc.BPF)(text=text, cflags=list(cflags) + headers.cflags())


class Session:
    def __init__(self, kernel=None, probes=None, mode="auto", bpf_stats=False, latency=False):
        self.kernel = kernel or Kernel()
        self.wanted = probes
        self.mode = mode
        self.latency = latency    # opt-in: entry programs and clocks (latency histograms)
        self.bpf_stats = bpf_stats
        self.plans = []
        self.headers = None
        self.bpf = None
        self.layout = None
        self.compiled = []        # function names in BCC's own spelling
        self._events_seen = ()    # newest failure event per CPU at the last snapshot
        self._stats_fd = None
        self._our_tags = set()
        self.started = 0.0

    # ---- lifecycle
    def start(self):
        check_privileges()
        bcc = import_bcc()
        self.kernel.btf   # raises Unavailable without BTF
        self.headers = prepare_headers(self.kernel)
        self.plans = planmod.make_plan(self.kernel, self.wanted, self.mode)
        if not any(p.available for p in self.plans):
            raise NoProbeAttached("no probe can attach on this kernel: " + "; ".join(
                f"{p.name}: {p.reason}" for p in self.plans))
        text, cflags, self.layout = program.build(self.kernel, self.plans,
                                                  fallback=self.mode == "auto",
                                                  latency=self.latency)

        class _BPF(bcc.BPF):
            def _trace_autoload(self):
                pass      # lstrace attaches each program itself, one failure at a time

        try:
            self.bpf = compile_bcc(text, cflags, self.headers, cls=_BPF)
        except Exception as e:
            raise Unavailable(f"BCC could not compile lstrace's BPF program against "
                              f"{self.headers.build}: {e}")
        self.compiled = [bcc.lib.bpf_function_name(self.bpf.module, i).decode()
                         for i in range(bcc.lib.bpf_num_functions(self.bpf.module))]
        self._fill_callers()
        for p in self.plans:
            if p.available:
                self.attach(p)
        if not any(p.available for p in self.plans):
            self.stop()
            raise NoProbeAttached("no probe could be attached: " + "; ".join(
                f"{p.name}: {p.reason}" for p in self.plans))
        self._our_tags = {bpfsys.prog_info(f.fd).tag for f in self.bpf.funcs.values()}
        if self.bpf_stats:
            try:
                self._stats_fd = bpfsys.enable_stats()
            except bpfsys.BPFError:
                self._stats_fd = None
        self.started = time.monotonic()
        return self

    def attach_points(self, p):
        """[(kind, event, function)] of one planned probe: what is attached and detached."""
        return program.attach_points(p, self.compiled, self.latency)

    def attach(self, p):
        """Attach one probe's programs, all or none.  An fentry probe that passed the
        trial but fails here falls back to kprobe (its programs are compiled too)."""
        try:
            done = []
            try:
                for point in self.attach_points(p):
                    _ATTACH[point[0]](self.bpf, point[1].encode(), point[2].encode())
                    done.append(point)
            except BaseException:
                for point in reversed(done):
                    _detach_point(self.bpf, point)
                raise
        except Exception as e:       # BCC raises bare Exceptions
            p.tried[p.mode] = str(e)
            failed, p.mode = p.mode, "unavailable"
            p.reason = f"{failed} attach failed: {e}"
            if failed == "fentry" and self.mode == "auto":
                why = planmod.try_kprobe(p.func)
                if why is None:
                    p.mode = "kprobe"
                    self.attach(p)
                else:
                    p.tried["kprobe"] = why
                    p.reason += f"; kprobe: {why}"

    def detach(self, p):
        """Detach one attached probe (the benchmarks toggle probes on a live session)."""
        for point in self.attach_points(p):
            _detach_point(self.bpf, point)

    def _fill_callers(self):
        table = self.bpf[b"callers"]
        ranges = program.caller_ranges(self.kernel.kallsyms)
        top = (1 << 64) - 1
        for i in range(program.N_RANGES):
            start, end, cat = ranges[i] if i < len(ranges) else (top, top, 0)
            table[ctypes.c_int(i)] = table.Leaf(start, end, cat)

    def stop(self):
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None
        if self._stats_fd is not None:
            os.close(self._stats_fd)
            self._stats_fd = None

    @property
    def stats_enabled(self):
        """BPF run-time statistics are on (for as long as the session holds the fd)."""
        return self._stats_fd is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- reading
    def statuses(self):
        return [ProbeStatus(p.name, p.kind, p.mode, p.available,
                            p.reason or p.blind_spots, p.func) for p in self.plans]

    def _percpu(self, name, size):
        """Every CPU's value of a single-slot per-CPU array, in one lookup."""
        ncpu = len(self.kernel.possible_cpus)
        raw = bpfsys.map_lookup_raw(self.bpf[name.encode()].map_fd, b"\0\0\0\0",
                                    (size + 7) // 8 * 8 * ncpu)
        return decode.split_percpu(raw, ncpu, size)

    def snapshot(self):
        snap = Snapshot(taken=time.monotonic(), cpus=list(self.kernel.possible_cpus),
                        kernel={"release": self.kernel.release,
                                "generation": self.kernel.generation},
                        probes=self.statuses(), started=self.started)
        attached = {p.name for p in self.plans if p.available}
        decode.counters(snap, self.layout, self._percpu("counters", self.layout.value_size),
                        attached, latency=self.latency)
        rows = decode.event_rows(self._percpu("events", decode.RING_SIZE))
        # new failures may come from BPF programs loaded since the symbols were read
        # (a re-read skipped by the rate limit is tried again at the next snapshot)
        newest = decode.newest_seqs(rows, len(snap.cpus))
        if newest != self._events_seen and self.kernel.kallsyms.refresh_bpf():
            self._events_seen = newest
        decode.events(snap, rows, self.kernel.kallsyms.resolve, self._our_tags)
        snap.programs = self.program_stats()
        return snap

    def program_stats(self):
        # which helper probe each program serves: its exit program's
        # recursion_misses are calls the kernel did not let lstrace see
        role = {}
        for p in self.plans:
            if p.kind == "helper" and p.available:
                entry, exit_ = program.entry_exit_names(p, self.compiled)
                role[entry], role[exit_] = (p.name, "entry"), (p.name, "exit")
        out = []
        for f in (self.bpf.funcs.values() if self.bpf else ()):
            try:
                i = bpfsys.prog_info(f.fd)
            except bpfsys.BPFError:
                continue
            name = f.name.decode() if isinstance(f.name, bytes) else f.name
            probe, r = role.get(name, ("", ""))
            out.append(ProgramStats(i.id, name, i.run_cnt, i.run_time_ns, i.recursion_misses,
                                    probe=probe, role=r))
        return out
