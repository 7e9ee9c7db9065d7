"""The API every command shares: start probes -> read snapshots -> stop.

    with Session(probes=["rqspinlock"]) as s:
        snap = s.snapshot()

Start-up checks turn each missing prerequisite (root, BCC, BTF, headers) into
one clear error; a probe that fails to attach is reported in the snapshot and
the others keep running.

The facade over four pieces: lstrace.preflight (the checks), lstrace.loader
(plan, compile and load in a short-lived child process: this process never
maps BCC or LLVM), lstrace.attach (attach and detach through bpf() and
perf_event_open) and lstrace.decode (raw map bytes -> Snapshot).
"""
import os
import time

from . import attach as attachmod
from . import bpfsys, decode, heap, probes, program
from .errors import NoProbeAttached
from .kernel import Kernel
from . import loader as loadermod
from .preflight import check_privileges
from .snapshot import ProbeStatus, ProgramStats, Snapshot


class Session:
    def __init__(self, kernel=None, probes=None, mode="auto", bpf_stats=False, latency=False):
        self.kernel = kernel or Kernel()
        self.wanted = probes
        self.mode = mode
        self.latency = latency    # opt-in: entry programs and clocks (latency histograms)
        self.bpf_stats = bpf_stats
        self.plans = []
        self.layout = None
        self.compiled = []        # function names in BCC's own spelling
        self.started = 0.0
        self._loader = None
        self._maps = {}           # map name -> fd
        self._progs = {}          # function name -> program fd
        self._load_errors = {}    # function name -> why the loader could not load it
        self._links = {}          # (kind, event, function) -> attachment fd
        self._events_seen = ()    # newest failure event per CPU at the last snapshot
        self._stats_fd = None
        self._our_tags = set()

    # ---- lifecycle
    def start(self):
        check_privileges()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        self._loader = loadermod.Loader()
        k = self.kernel
        self._loader.ask({
            "op": "start", "probes": self.wanted, "mode": self.mode, "latency": self.latency,
            "kernel": {"btf_path": k.btf_path, "kallsyms_path": k.kallsyms_path,
                       "release": k.release}})
        # parsed here while the child starts and reads BTF (two processes, two
        # CPUs), then handed to it: this process keeps them to resolve stacks
        self._loader.send_symbols(k.kallsyms)
        reply, fds = self._loader.answer()
        nmaps = len(reply["maps"])
        self._take(reply["maps"], fds[:nmaps], self._maps)
        self._take(reply["progs"], fds[nmaps:], self._progs)
        self._load_errors.update(reply["errors"])
        self.plans, self.layout, self.compiled = reply["plans"], reply["layout"], reply["compiled"]
        # the child read BTF; this process keeps its verdict, not the parsed BTF
        # (cached_property values live in the instance dict)
        k.__dict__.setdefault("generation", reply["generation"])
        for p in self.plans:
            if p.available:
                self.attach(p)
        self._loader.close()          # every program the probes use is loaded
        if not any(p.available for p in self.plans):
            raise NoProbeAttached("no probe could be attached: " + "; ".join(
                f"{p.name}: {p.reason}" for p in self.plans))
        self._our_tags = set()
        for fd in self._progs.values():
            try:
                self._our_tags.add(bpfsys.prog_info(fd).tag)
            except bpfsys.BPFError:
                pass
        if self.bpf_stats:
            try:
                self._stats_fd = bpfsys.enable_stats()
            except bpfsys.BPFError:
                self._stats_fd = None
        self.started = time.monotonic()
        heap.release(collect=True)     # start-up's garbage: pickled replies, the symbol parse

    @staticmethod
    def _take(names, fds, into):
        for name, fd in zip(names, fds):
            old = into.pop(name, None)
            if old is not None:
                os.close(old)
            into[name] = fd

    def attach_points(self, p):
        """[(kind, event, function)] of one planned probe: what is attached and detached."""
        return program.attach_points(p, self.compiled, self.latency)

    def _prog_fds(self, points):
        """Program fd of each point, loading what is missing while the loader lives."""
        missing = [(fn, kind, event) for kind, event, fn in points
                   if fn not in self._progs and fn not in self._load_errors]
        if missing and self._loader is not None and self._loader.alive:
            reply, fds = self._loader.request({"op": "load", "functions": missing})
            self._take(reply["progs"], fds, self._progs)
            self._load_errors.update(reply["errors"])
        out = []
        for _, _, fn in points:
            if fn in self._progs:
                out.append(self._progs[fn])
            else:
                raise attachmod.AttachError(self._load_errors.get(
                    fn, f"program {fn} was not loaded when the session started"))
        return out

    def attach(self, p):
        """Attach one probe's programs, all or none.  One that passed the trial but
        fails here takes the fallback its module declares (fall_back), if any."""
        try:
            points = self.attach_points(p)
            fds = self._prog_fds(points)
            done = []
            try:
                for point, fd in zip(points, fds):
                    self._links[point] = attachmod.attach(point[0], point[1], fd)
                    done.append(point)
            except BaseException:
                for point in reversed(done):
                    attachmod.detach(self._links.pop(point))
                raise
        except (attachmod.AttachError, LookupError) as e:
            # the probe's own fallback (fentry -> kprobe, tp_btf -> raw_tp, ...)
            before = set(p.tried)
            if probes.module_of(p.name, p.kind).fall_back(p, str(e), self.mode):
                return self.attach(p)
            failed, p.mode = p.mode, "unavailable"
            # what the fallback tried and why it could not
            p.reason = f"{failed} attach failed: {e}" + "".join(
                f"; {m}: {why}" for m, why in p.tried.items() if m not in before and m != failed)
            p.tried[failed] = str(e)

    def detach(self, p):
        """Detach one attached probe (the benchmarks toggle probes on a live session)."""
        for point in self.attach_points(p):
            fd = self._links.pop(point, None)
            if fd is not None:
                attachmod.detach(fd)

    def stop(self):
        if self._loader is not None:
            self._loader.kill()
            self._loader = None
        for table in (self._links, self._progs, self._maps):
            for fd in table.values():
                os.close(fd)
            table.clear()
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
        return [ProbeStatus(p.name, p.kind, p.mode, p.available, p.reason or p.blind_spots,
                            p.func, blind_spots=p.blind_spot_keys) for p in self.plans]

    def _percpu(self, name, size):
        """Every CPU's value of a single-slot per-CPU array, in one lookup."""
        ncpu = len(self.kernel.possible_cpus)
        raw = bpfsys.map_lookup_raw(self._maps[name], b"\0\0\0\0",
                                    (size + 7) // 8 * 8 * ncpu)
        return decode.split_percpu(raw, ncpu, size)

    def snapshot(self):
        facts = next((p.facts for p in self.plans if p.facts), None)
        snap = Snapshot(taken=time.monotonic(), cpus=list(self.kernel.possible_cpus),
                        kernel={"release": self.kernel.release,
                                "generation": self.kernel.generation,
                                "htab_lock": facts.htab_lock if facts else ""},
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
        role = program.roles(self.plans, self.compiled, self.latency)
        out = []
        for name, fd in self._progs.items():
            try:
                i = bpfsys.prog_info(fd)
            except bpfsys.BPFError:
                continue
            probe, r = role.get(name, ("", ""))
            out.append(ProgramStats(i.id, name, i.run_cnt, i.run_time_ns, i.recursion_misses,
                                    probe=probe, role=r))
        return out
