"""Decide, per probe point, how it can be watched on the running kernel.

Every helper function gets a *trial attach* of an empty program to that exact
function: fentry+fexit first, kprobe+kretprobe second (libbpf-tools'
fentry_can_attach idea; BPF.support_kfunc() only says trampolines exist
somewhere).  Tracepoint probes are tried the same way.  The result says why
a probe is unavailable, so `doctor` and the metrics can tell the user.
"""
from dataclasses import dataclass, field

from . import probes
from .errors import UsageError

# What a probe cannot see, per kernel: lstrace_probe_blind_spot{blind_spot=KEY},
# doctor and top.  Each key is decided from BTF / kallsyms facts of the running
# kernel (blind_facts), never from the version string; "measured" is what the
# lab's guests showed (README "How lstrace probes").  Each probe module says its
# own (BLIND_SPOT_TEXT, blind_spots), in MODULES' order, then the one its
# programs may share (lstrace.probes.preemption).
BLIND_SPOT_TEXT = dict(probes.BLIND_SPOT_TEXT)
BLIND_SPOT_TEXT.update(probes.preemption.BLIND_SPOT_TEXT)


@dataclass(frozen=True)
class BlindFacts:
    """The kernel facts blind spots follow; `how` says what decided each."""
    syscall_tp_faultable: bool = False    # syscalls:* programs skip bpf_prog_active
    kprobe_misses_counted: bool = False   # trace_call_bpf counts skipped runs
    pre_queue_aa: bool = True             # rqspinlock checks AA before queueing
    preemptible: bool = True              # preempt=full/lazy: lstrace's own programs too
    how: tuple = ()                       # ((fact, evidence), ...)
    htab_lock: str = ""                   # hash-map buckets: map_locked | rqspinlock | ""


def htab_lock(kernel):
    """'map_locked' (before 6.15: per-CPU guard, -EBUSY), 'rqspinlock' (6.15+:
    -EDEADLK / -ETIMEDOUT) or '' (cannot tell), from BTF: struct bpf_htab lost
    its map_locked counters when the bucket lock became an rqspinlock_t."""
    try:
        btf = kernel.btf
        if btf.member_offset("bpf_htab", "map_locked") is not None:
            return "map_locked"
        if btf.member_offset("bpf_htab", "buckets") is not None and \
                btf.find(8, "rqspinlock_t") is not None:      # 8: BTF_KIND_TYPEDEF
            return "rqspinlock"
    except Exception:       # noqa: BLE001 - no BTF: unknown
        pass
    return ""




def _has_symbol(kernel, name):
    try:
        if kernel.btf.has_func(name):
            return True
    except Exception:       # noqa: BLE001 - no BTF: kallsyms may still say
        pass
    try:
        return kernel.kallsyms.range_of(name) is not None
    except Exception:       # noqa: BLE001
        return False


def blind_facts(kernel):
    """Decide the blind-spot facts of one kernel from BTF and kallsyms.

    - trace_call_bpf_faultable exists (7.x): syscall tracepoint programs run
      without raising bpf_prog_active, so kprobe-mode probes see their calls.
    - bpf_get_kprobe_info has a `missed` parameter (6.7, the series that made
      trace_call_bpf count skipped runs as recursion_misses).
    - rqspinlock without check_deadlock() (dropped by 5860f5ce479f "Perform AA
      checks immediately", 6.19, with 087849cca31d's AA check before queueing);
      6.15-6.18 have it (the 6.18.44 host: check_deadlock(lock, mask))."""
    how = []
    faultable = _has_symbol(kernel, "trace_call_bpf_faultable")
    how.append(("syscall_tp_faultable", "trace_call_bpf_faultable " +
                ("present" if faultable else "absent")))
    try:
        proto = kernel.prototype("bpf_get_kprobe_info")
    except Exception:       # noqa: BLE001
        proto = None
    if proto is not None:
        counted = any(a.name == "missed" for a in proto.params)
        how.append(("kprobe_misses_counted", "bpf_get_kprobe_info " +
                    ("has" if counted else "has no") + " 'missed' parameter"))
    else:
        counted = False
        how.append(("kprobe_misses_counted", "bpf_get_kprobe_info not in BTF (no kprobes?): "
                    "assumed uncounted"))
    if not _has_symbol(kernel, "resilient_queued_spin_lock_slowpath"):
        pre_queue = True
        how.append(("pre_queue_aa", "no rqspinlock (before 6.15)"))
    elif _has_symbol(kernel, "check_deadlock_AA") or _has_symbol(kernel, "check_deadlock_ABBA"):
        pre_queue = not _has_symbol(kernel, "check_deadlock")
        how.append(("pre_queue_aa", "check_deadlock() " + ("absent: 6.19+ AA checks"
                                                             if pre_queue else "present")))
    else:
        pre_queue = True
        how.append(("pre_queue_aa", "rqspinlock deadlock checks not in BTF or kallsyms: "
                    "assumed"))
    preemption = getattr(kernel, "preemption", "unknown")
    preemptible = preemption in ("full", "lazy", "unknown")
    how.append(("preemptible", f"preemption: {preemption}"
                + (" (unknown: assumed preemptible)" if preemption == "unknown" else "")))
    hl = htab_lock(kernel)
    how.append(("htab_lock", {"map_locked": "struct bpf_htab has map_locked (before 6.15)",
                              "rqspinlock": "struct bpf_htab without map_locked, "
                                            "rqspinlock_t in BTF (6.15+)"}.get(
                                                hl, "hash-map bucket lock not in BTF")))
    return BlindFacts(faultable, counted, pre_queue, preemptible, tuple(how), hl)


def blind_spot_keys(name, kind, mode, facts=None):
    """Blind-spot keys of one probe in one mode; facts None (unknown kernel):
    every blind spot the mode can have."""
    m = probes.module_of(name, kind)
    return m.blind_spots(mode, facts) if m else ()


def blind_spot_details(keys):
    """Each key with what it means (doctor --json, per probe)."""
    return "; ".join(f"{k}: {BLIND_SPOT_TEXT.get(k, k)}" for k in keys)


def blind_spot_groups(items):
    """[(probe, keys)] -> [{"blind_spot", "text", "probes"}], one per key, in
    BLIND_SPOT_TEXT's order: doctor and top say each blind spot once."""
    probes_of = {}
    for name, keys in items:
        for k in keys:
            probes_of.setdefault(k, []).append(name)
    order = list(BLIND_SPOT_TEXT)
    return [{"blind_spot": k, "text": BLIND_SPOT_TEXT.get(k, k), "probes": probes_of[k]}
            for k in sorted(probes_of, key=lambda k: order.index(k) if k in order else 99)]


def blind_spot_text(keys):
    """The keys as status text ("blind spots: a, b"; lstrace doctor explains each):
    ProbeStatus.blind_spot_keys reads the keys back from it."""
    return f"blind spots: {', '.join(keys)}" if keys else ""


@dataclass
class ProbePlan:
    name: str
    kind: str                   # "helper" or "tracepoint"
    mode: str = "unavailable"   # fentry | kprobe | tracepoint | unavailable
    reason: str = ""            # why unavailable, or notes
    func: str = ""
    proto: object = None        # btf.Prototype for helpers
    tried: dict = field(default_factory=dict)   # mode -> failure reason
    facts: BlindFacts = None    # the kernel's (blind_facts), set by make_plan

    @property
    def available(self):
        return self.mode != "unavailable"

    @property
    def blind_spot_keys(self):
        """What this probe cannot see in its current mode (follows a fallback
        from fentry to kprobe at attach time)."""
        return blind_spot_keys(self.name, self.kind, self.mode, self.facts) \
            if self.available else ()

    @property
    def blind_spots(self):
        return blind_spot_text(self.blind_spot_keys)


def parse_probe_list(text):
    """--probes a,b,c -> names; None (not given) -> None, meaning the default
    probes (every probe but the opt-in groups).  A group name (`maps`) stands
    for its probes; an item with a leading '+' (`+maps`, `+htab_update`) adds
    to the defaults instead of replacing them.  Unknown names, or a list naming
    none ("", ","), are a usage error."""
    if text is None:
        return None
    items = [n.strip() for n in text.split(",") if n.strip()]
    if not items or all(n == "+" for n in items):
        raise UsageError(f"bad --probes {text!r}: name at least one probe (leave --probes out "
                         "for the default probes)")
    add = any(n.startswith("+") for n in items)
    names, unknown = list(probes.DEFAULT_NAMES) if add else [], []
    for item in items:
        n = item.lstrip("+").strip()
        found = probes.GROUPS.get(n) or ((n,) if n in probes.ALL_NAMES else ())
        if not found:
            unknown.append(item)
        names += [x for x in found if x not in names]
    if unknown:
        raise UsageError(f"unknown probe {', '.join(unknown)}; known probes: "
                         f"{', '.join(probes.ALL_NAMES)}; groups (opt-in, '+GROUP' adds one "
                         f"to the defaults): {', '.join(probes.GROUPS)}")
    return names


def plan_helper(kernel, hp, want_mode="auto"):
    return probes.HELPER_MODULE.plan(kernel, ProbePlan(hp.name, "helper", func=hp.func), want_mode)


def plan_tracepoint(kernel, tp, mode="auto"):
    return probes.module_of(tp.name).plan(kernel, ProbePlan(tp.name, "tracepoint"), mode)


def make_plan(kernel, names=None, mode="auto"):
    """Plan the default probes (or the named ones: parse_probe_list).  mode:
    auto | fentry | kprobe, forcing the mode of helper probes (the lab runs
    each mode separately)."""
    wanted = set(names) if names else set(probes.DEFAULT_NAMES)
    plans = []
    for hp in probes.HELPERS:
        if hp.name in wanted:
            plans.append(plan_helper(kernel, hp, mode))
    for tp in probes.TRACEPOINTS:
        if tp.name in wanted:
            plans.append(plan_tracepoint(kernel, tp, mode))
    if any(p.available for p in plans):
        facts = blind_facts(kernel)
        for p in plans:
            p.facts = facts
    return plans
