"""The helper family's planning (the first mode whose trial attach works on
the exact function) and its blind spots."""
from .. import preemption, trial


def plan(kernel, p, mode="auto"):
    """Fill ProbePlan `p` (name, func set) for `mode`: auto | fentry | kprobe."""
    p.proto = kernel.prototype(p.func)
    if p.proto is None:
        p.reason = f"{p.func} does not exist on this kernel"
        return p
    trial.first_mode(kernel, p, p.func, mode)
    return p


# ---- blind spots (kprobe mode: trace_call_bpf, kernel/trace/bpf_trace.c); in
# fentry mode what the kernel skips is counted (recursion_misses)
BLIND_SPOT_TEXT = {
    "bpf_prog_active": (
        "calls made while bpf_prog_active is raised on the CPU: inside bpf() map syscalls "
        "and from kprobe, perf_event and (non-syscall) tracepoint BPF programs (counted as "
        "recursion_misses since 6.7; measured: 6.12 counts them, 6.1 lost them silently)"),
    "syscall_tracepoint_programs": (
        "calls from BPF programs on syscalls:* tracepoints: this kernel runs them through "
        "trace_call_bpf under bpf_prog_active (no trace_call_bpf_faultable; measured on "
        "6.12: all 2,000 gets of such a program missed; 7.3 saw all 2,000)"),
    "uncounted_misses": (
        "the calls it skips are not counted anywhere (bpf_get_kprobe_info has no 'missed': "
        "before 6.7), so lstrace_probe_missed_calls_total stays 0 (measured on 6.1)"),
}


def blind_spots(mode, facts=None):
    """Keys of what a helper probe in `mode` cannot see; facts None (unknown
    kernel): every blind spot the mode can have."""
    if mode == "fentry":            # its fexit program runs preemptible
        return preemption.keys(facts)
    if mode != "kprobe":
        return ()
    if facts is None:
        return tuple(BLIND_SPOT_TEXT)
    return tuple(k for k, on in (("bpf_prog_active", True),
                                 ("syscall_tracepoint_programs", not facts.syscall_tp_faultable),
                                 ("uncounted_misses", not facts.kprobe_misses_counted))
                 if on)


def fall_back(plan, why, mode="auto"):
    """An fentry that passed its trial but did not attach: the kprobe, when the
    mode is auto and a kprobe trial passes (its programs are compiled too)."""
    if plan.mode != "fentry" or mode != "auto":
        return False
    plan.tried["fentry"] = why
    kprobe_why = trial.try_kprobe(plan.func)
    if kprobe_why is not None:
        plan.tried["kprobe"] = kprobe_why
        return False
    plan.mode = "kprobe"
    return True
