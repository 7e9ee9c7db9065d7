"""Decide, per probe point, how it can be watched on the running kernel.

Every helper function gets a *trial attach* of an empty program to that exact
function: fentry+fexit first, kprobe+kretprobe second (libbpf-tools'
fentry_can_attach idea; BPF.support_kfunc() only says trampolines exist
somewhere).  Tracepoint probes are tried the same way.  The result says why
a probe is unavailable, so `doctor` and the metrics can tell the user.
"""
from dataclasses import dataclass, field

from . import bpfsys, probes
from .errors import UsageError

# What each mode cannot see (lab-notes.md "Measured"), shown by doctor.
BLIND_SPOTS = {
    "kprobe": "misses calls made while bpf_prog_active is held: inside bpf() map syscalls "
              "and from kprobe/tracepoint/perf_event BPF programs (counted as "
              "recursion_misses on 6.12+, silent on 6.1)",
    "fentry": "",
    "tracepoint": "",
}
# the same, as bounded metric label values (lstrace_probe_blind_spot)
BLIND_SPOT_KEYS = {"kprobe": ("bpf_prog_active",)}


@dataclass
class ProbePlan:
    name: str
    kind: str                   # "helper" or "tracepoint"
    mode: str = "unavailable"   # fentry | kprobe | tracepoint | unavailable
    reason: str = ""            # why unavailable, or notes
    func: str = ""
    proto: object = None        # btf.Prototype for helpers
    tried: dict = field(default_factory=dict)   # mode -> failure reason

    @property
    def available(self):
        return self.mode != "unavailable"

    @property
    def blind_spots(self):
        return BLIND_SPOTS.get(self.mode, "")


def parse_probe_list(text):
    """--probes a,b,c -> names; None (not given) -> None, meaning every probe;
    unknown names, or a list naming none ("", ","), are a usage error."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"bad --probes {text!r}: name at least one probe (leave --probes out "
                         "for every probe)")
    unknown = [n for n in names if n not in probes.ALL_NAMES]
    if unknown:
        raise UsageError(f"unknown probe {', '.join(unknown)}; known probes: "
                         f"{', '.join(probes.ALL_NAMES)}")
    return names


def _try_fentry(kernel, func):
    fid = kernel.btf.func_id(func)
    for fexit in (False, True):
        why = bpfsys.trial_fentry(fid, fexit=fexit)
        if why:
            return f"{'fexit' if fexit else 'fentry'}: {why}"
    return None


def try_kprobe(func):
    for ret in (False, True):
        why = bpfsys.trial_kprobe(func, retprobe=ret)
        if why:
            return why
    return None


def plan_helper(kernel, hp, want_mode="auto"):
    p = ProbePlan(hp.name, "helper", func=hp.func)
    p.proto = kernel.prototype(hp.func)
    if p.proto is None:
        p.reason = f"{hp.func} does not exist on this kernel"
        return p
    order = ("fentry", "kprobe") if want_mode == "auto" else (want_mode,)
    for mode in order:
        if mode == "fentry":
            why = _try_fentry(kernel, hp.func)
        elif mode == "kprobe":
            why = try_kprobe(hp.func)
        else:
            why = f"{mode} mode does not apply to function probes"
        if why is None:
            p.mode = mode
            return p
        p.tried[mode] = why
    p.reason = "; ".join(f"{m}: {w}" if not w.startswith(m) else w for m, w in p.tried.items())
    return p


def plan_tracepoint(kernel, tp):
    p = ProbePlan(tp.name, "tracepoint")
    for cat, ev in tp.events:
        if not kernel.has_tracepoint(cat, ev):
            p.reason = f"tracepoint {cat}:{ev} does not exist on this kernel" + (
                "" if kernel.tracefs else " (tracefs not mounted and cannot be mounted)")
            return p
        if cat != "syscalls":   # syscall events are not raw tracepoints
            why = bpfsys.trial_raw_tracepoint(ev)
            if why:
                p.reason = f"raw tracepoint {ev}: {why}"
                return p
    if tp.name == "busy_sampler":
        if kernel.generation == "C":
            p.reason = "generation C (7.0+) has no busy counters"
            return p
        if not kernel.percpu_var_addr("bpf_task_storage_busy"):
            p.reason = "busy counters not readable: " + (
                "kallsyms has no per-CPU data symbols (CONFIG_KALLSYMS_ALL off)"
                if kernel.kallsyms.readable else
                "kallsyms addresses hidden (kptr_restrict; no CAP_SYSLOG)")
            return p
    slowpath = "resilient_queued_spin_lock_slowpath"
    if tp.name == "rqspinlock" and not kernel.kallsyms.range_of(slowpath):
        if not kernel.has_func(slowpath):
            p.reason = "no rqspinlock on this kernel (before 6.15)"
            return p
        # BTF has it: kallsyms hides addresses (kptr_restrict; CAP_BPF + CAP_PERFMON
        # without CAP_SYSLOG).  Failures still count, with less detail.
        p.reason = ("kallsyms addresses hidden: failures count with caller 'other' and kind "
                    "'unknown', no wait histogram")
    p.mode = "tracepoint"
    return p


def make_plan(kernel, names=None, mode="auto"):
    """Plan every probe (or the named ones).  mode: auto | fentry | kprobe,
    forcing the mode of helper probes (the lab runs each mode separately)."""
    wanted = set(names) if names else set(probes.ALL_NAMES)
    plans = []
    for hp in probes.HELPERS:
        if hp.name in wanted:
            plans.append(plan_helper(kernel, hp, mode))
    for tp in probes.TRACEPOINTS:
        if tp.name in wanted:
            plans.append(plan_tracepoint(kernel, tp))
    return plans
