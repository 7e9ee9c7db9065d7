"""Snapshots: everything lstrace counted, at one instant, as plain data.

`top`, `hist` and `serve` read snapshots and never touch BPF maps, so they
can be tested with snapshots built by hand.  Counters are totals since the
session started; rates come from two snapshots (`delta`).
"""
from dataclasses import dataclass

from . import probes as probesmod


@dataclass(frozen=True)
class ProbeStatus:
    name: str
    kind: str          # helper | tracepoint
    mode: str          # fentry | kprobe | tracepoint | unavailable
    attached: bool
    reason: str = ""   # why not attached / what the mode cannot see
    func: str = ""
    blind_spots: tuple = None   # blind-spot keys (lstrace.plan.BLIND_SPOT_TEXT); None: not given

    @property
    def blind_spot_keys(self):
        """What this attached probe cannot see: the keys given, else read back
        from the status text ("blind spots: a, b", plan.blind_spot_text), else
        every blind spot its mode can have on some kernel."""
        if not self.attached:
            return ()
        if self.blind_spots is not None:
            return tuple(self.blind_spots)
        from .plan import BLIND_SPOT_TEXT, blind_spot_keys
        text = self.reason or ""
        if text.startswith("blind spots: "):
            keys = tuple(k.strip() for k in text[len("blind spots: "):].split(","))
            if all(k in BLIND_SPOT_TEXT for k in keys):
                return keys
        return blind_spot_keys(self.name, self.kind, self.mode)


@dataclass(frozen=True)
class ProgramStats:
    id: int
    name: str
    run_cnt: int
    run_time_ns: int
    recursion_misses: int
    probe: str = ""    # lstrace probe this program belongs to ("" for others)
    role: str = ""     # "entry" or "exit" (helper probes), "" otherwise


@dataclass(frozen=True)
class FailureEvent:
    seq: int
    cpu: int
    ts_ns: int
    source: str        # probe name, or "rqspinlock"
    outcome: str       # busy, deadlock, timeout, ...
    comm: str
    program: str       # BPF program that called the helper ("" if none)
    caller: str        # first kernel function outside lstrace's hooks


class Snapshot:
    """One instant's counts.  `taken`: time.monotonic() when read; `cpus`: CPU
    ids, one row each; `kernel`: release, generation, ...; `probes`: of
    ProbeStatus; `programs`: of ProgramStats; `events`: of FailureEvent,
    oldest first; `started`: time.monotonic() of attach.

    Counter fields are the probes' (each module's COUNTS, filled by its decode;
    e.g. helper: (probe, cpu) -> {outcome: n}, rq_failures: (cpu, errno, kind,
    caller) -> n) and the core's guard_skips (cpu -> n): each a dict, read as
    an attribute, subtracted by `delta`."""

    CORE_COUNTS = ("guard_skips",)

    def __init__(self, taken, cpus, kernel, probes, programs=None, events=None,
                 started=0.0, **counts):
        self.taken, self.cpus, self.kernel, self.probes = taken, cpus, kernel, probes
        self.programs = programs if programs is not None else []
        self.events = events if events is not None else []
        self.started = started
        names = self.counter_names()
        unknown = set(counts) - set(names)
        if unknown:
            raise TypeError(f"Snapshot: no probe counts {', '.join(sorted(unknown))}")
        self.counts = {n: counts.get(n, {}) for n in names}

    @classmethod
    def counter_names(cls):
        return probesmod.COUNTS + cls.CORE_COUNTS

    def __getattr__(self, name):
        counts = self.__dict__.get("counts", {})
        if name in counts:
            return counts[name]
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name in self.__dict__.get("counts", {}):
            self.counts[name] = value
        else:
            super().__setattr__(name, value)

    # ---- derived views (all pure functions of the data above)
    def calls(self, probe, cpu):
        return sum(self.helper.get((probe, cpu), {}).values())

    def failures(self, probe, cpu, reason=None):
        out = self.helper.get((probe, cpu), {})
        if reason:
            return out.get(reason, 0)
        return sum(n for o, n in out.items() if o not in ("ok", "not_found"))

    def helper_probes(self):
        return [p.name for p in self.probes if p.kind == "helper" and p.attached]

    def cpu_counts(self):
        """cpu -> {count: n} of top's per-CPU row (calls, busy, deadlock, timeout,
        failures, syscall_errors), each probe module's part summed."""
        out = {cpu: {} for cpu in self.cpus}
        for m in probesmod.MODULES:
            for cpu, counts in m.cpu_counts(self).items():
                if cpu in out:
                    row = out[cpu]
                    for k, n in counts.items():
                        row[k] = row.get(k, 0) + n
        return out

    def per_cpu_totals(self):
        """cpu -> {"calls", "busy", "deadlock", "timeout", "failures"} over all
        helper probes, with rqspinlock failures added to deadlock/timeout."""
        keys = ("calls", "busy", "deadlock", "timeout", "failures")
        return {cpu: {k: row.get(k, 0) for k in keys} for cpu, row in self.cpu_counts().items()}

    def delta(self, older):
        """A snapshot holding the counts between `older` and self: every
        counter field (a dict field: each probe module fills its own) subtracted."""
        counts = {name: {k: _minus(v, older.counts[name].get(k)) for k, v in mine.items()}
                  for name, mine in self.counts.items()}
        return Snapshot(
            taken=self.taken, cpus=self.cpus, kernel=self.kernel, probes=self.probes,
            programs=self.programs,
            events=[e for e in self.events
                    if e.seq > max((o.seq for o in older.events if o.cpu == e.cpu), default=0)],
            started=self.started, **counts)


def _minus(new, old):
    if old is None:
        return new
    if isinstance(new, dict):
        return {k: v - old.get(k, 0) for k, v in new.items()}
    if isinstance(new, list):
        return [a - b for a, b in zip(new, old)]
    if isinstance(new, tuple):      # busy_samples: (samples, {counter: held})
        return tuple(_minus(a, b) for a, b in zip(new, old))
    return new - old

