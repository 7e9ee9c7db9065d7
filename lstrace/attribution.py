"""Which BPF program failed: the failure events' ring -> failures counted by
(program, probe, reason), for lstrace_helper_failures_by_program_total.

Every failed helper call (any reason but not_found) and every rqspinlock
failure lstrace counts also leaves an event in a per-CPU ring of N_EVENTS
slots (decode.py), numbered 1, 2, 3, ... per CPU (`seq`), with the stack that
names the calling BPF program.  A scrape sees only what the ring still holds,
so this keeps state across scrapes:

- an event is counted once: per CPU everything up to the highest seq taken
  is done, whatever later scrapes still see in the ring;
- a seq that is gone when its turn comes was overwritten by newer failures
  (more than N_EVENTS between two scrapes): it counts as *lost*
  (lstrace_failure_events_lost_total) and, under program="unattributed", as
  the (probe, reason) whose counter it is missing from: per CPU, counters
  minus attributed minus still-pending events.  So, summed over programs, the
  metric equals lstrace_helper_failures_total / lstrace_rqspinlock_failures_total
  for every (probe, reason) once the ring has been read after the failures;
- an event is taken only HOLD_S after it happened (its ts, CLOCK_MONOTONIC,
  against the snapshot's): by then the session has re-read the BPF programs'
  symbols after it (kallsyms.BPF_REFRESH_S), so a program loaded just before
  its failure is named and not mistaken for the program below it, the
  event's slot is written completely, and its counter was read by the
  snapshot (the counter is incremented before the event is recorded);
- a program's name seen while it was loaded is kept for its events: a later
  read after the program was unloaded no longer resolves its frames.

Bounded labels: program names only (never ids); the first MAX_PROGRAMS names
to fail get their own series (several new ones in one scrape: most failures
first), every later one is program="other" (a counter cannot move to another
series without going down); program="kernel" is a failure with no BPF
program on its stack (a bpf() syscall, the kernel's own lock users).
"""
from . import probes
from .kallsyms import BPF_REFRESH_S

MAX_PROGRAMS = 20
HOLD_S = BPF_REFRESH_S + 0.5
KERNEL, OTHER, UNATTRIBUTED = "kernel", "other", "unattributed"
RESERVED = (KERNEL, OTHER, UNATTRIBUTED)

def program_label(name):
    """A BPF program's name as a label value.  BPF names are [A-Za-z0-9_.]
    only, so "bpf:<name>" can never collide with a real one."""
    if not name:
        return KERNEL
    return f"bpf:{name}" if name in RESERVED else name


def event_keys(snap):
    """(probe, reason) pairs whose failures leave events, for the attached
    probes: zero series from attach time."""
    keys = []
    for p in snap.probes:
        m = probes.module_of(p.name, p.kind) if p.attached else None
        if m:
            keys += m.event_keys(p.name)
    return keys


def failure_counts(snap, cpus=None):
    """{(cpu, probe, reason): n} of the counters events are recorded for."""
    out = {}
    for m in probes.MODULES:
        out.update(m.event_counts(snap, cpus))
    return out


class Attribution:
    """Failures by (program, probe, reason), accumulated over snapshots of one
    session.  `announce`: a label set is exported with 0 the first time (a
    scrape later with its count), so that rate()/increase() see its first
    failures; off for a one-off look at one snapshot."""

    def __init__(self, max_programs=MAX_PROGRAMS, hold_s=HOLD_S, announce=True):
        self.max_programs = max_programs
        self.hold_ns = int(hold_s * 1e9)
        self.announce = announce
        self.last = {}            # cpu -> highest seq accounted for
        self.attributed = {}      # (cpu, probe, reason) -> events taken from the ring
        self.unattributed = {}    # (cpu, probe, reason) -> lost events assigned to it
        self.unassigned = {}      # cpu -> lost events not yet assigned to a (probe, reason)
        self.lost = 0             # events overwritten before a scrape took them
        self.counts = {}          # (program label, probe, reason) -> n
        self.programs = set()     # names with their own series (<= max_programs)
        self.exported = set()     # label sets written at least once
        self._names = {}          # (cpu, seq) -> program name seen for a pending event

    def update(self, snap):
        """Take what `snap` adds; returns self."""
        taken_ns = int(snap.taken * 1e9)
        by_cpu = {}
        for e in snap.events:
            by_cpu.setdefault(e.cpu, {})[e.seq] = e
            if e.program:
                self._names[(e.cpu, e.seq)] = e.program
        pending, new = {}, {}
        for cpu, evs in by_cpu.items():
            last = self.last.get(cpu, 0)
            seqs = sorted(s for s in evs if s > last)
            top, taken = last, []
            for s in seqs:                       # ts grows with seq: a prefix is old enough
                if taken_ns - evs[s].ts_ns < self.hold_ns:
                    break
                top = s
                taken.append(evs[s])
            for e in evs.values():
                if e.seq > top:
                    key = (cpu, e.source, e.outcome)
                    pending[key] = pending.get(key, 0) + 1
            gaps = (top - last) - len(taken)
            if gaps:
                self.lost += gaps
                self.unassigned[cpu] = self.unassigned.get(cpu, 0) + gaps
            for e in taken:
                key = (cpu, e.source, e.outcome)
                self.attributed[key] = self.attributed.get(key, 0) + 1
                name = self._names.pop((cpu, e.seq), "") or e.program
                k = (name, e.source, e.outcome)
                new[k] = new.get(k, 0) + 1
            self.last[cpu] = top
        if len(self._names) > 4 * sum(map(len, by_cpu.values())) + 64:
            self._names = {k: v for k, v in self._names.items()
                           if k[1] > self.last.get(k[0], 0)}
        self._admit(new)
        self._assign(snap, pending)
        return self

    def _admit(self, new):
        """Count newly taken events under their program's label; names not yet
        admitted are admitted while there is room, those with most failures first."""
        totals = {}
        for (name, _p, _r), n in new.items():
            if name and name not in self.programs:
                totals[name] = totals.get(name, 0) + n
        for name in sorted(totals, key=lambda x: (-totals[x], x)):
            if len(self.programs) < self.max_programs:
                self.programs.add(name)
        for (name, probe, reason), n in new.items():
            label = program_label(name) if not name or name in self.programs else OTHER
            k = (label, probe, reason)
            self.counts[k] = self.counts.get(k, 0) + n

    def _assign(self, snap, pending):
        """Lost events to the (probe, reason) whose per-CPU counter they are
        missing from; what no counter explains yet waits for the next snapshot."""
        cpus = {c for c, n in self.unassigned.items() if n}
        if not cpus:
            return
        deficits = {}
        for key, n in failure_counts(snap, cpus).items():
            d = (n - self.attributed.get(key, 0) - self.unattributed.get(key, 0)
                 - pending.get(key, 0))
            if d > 0:
                deficits.setdefault(key[0], []).append((d, key))
        for cpu in cpus:
            left = self.unassigned[cpu]
            for d, key in sorted(deficits.get(cpu, ()), key=lambda x: (-x[0], x[1])):
                take = min(d, left)
                self.unattributed[key] = self.unattributed.get(key, 0) + take
                k = (UNATTRIBUTED, key[1], key[2])
                self.counts[k] = self.counts.get(k, 0) + take
                left -= take
                if not left:
                    break
            self.unassigned[cpu] = left

    def rows(self, snap):
        """[((program, probe, reason), value)] sorted: every count, and zeros of
        program="unattributed" for each (probe, reason) of the attached probes."""
        values = dict(self.counts)
        for probe, reason in event_keys(snap):
            values.setdefault((UNATTRIBUTED, probe, reason), 0)
        out = []
        for key in sorted(values):
            v = values[key]
            if self.announce and key not in self.exported:
                self.exported.add(key)
                v = 0
            out.append((key, v))
        return out
