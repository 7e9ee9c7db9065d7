"""A blind spot of lstrace's own programs, not of one probe: fentry/fexit and
syscall-exit programs run preemptible (migrate_disable only), so on a
preempt=full/lazy kernel a call that returns while lstrace's program on that
CPU is preempted runs without it (the kernel skips a program already active
on the CPU).  The probes whose programs run so say it (helpers in fentry
mode, bpf_syscall); lstrace.plan.blind_facts decides `preemptible`."""
KEY = "preempted_program"
BLIND_SPOT_TEXT = {
    KEY: (
        "on a preemptible kernel (preempt=full/lazy; assumed when debugfs' sched/preempt is "
        "unreadable) a call that returns on a CPU while "
        "lstrace's program there is preempted runs without it (the kernel skips a program "
        "already active on the CPU): counted in lstrace_probe_missed_calls_total, not lost "
        "(measured on 7.3 lazy, 4 tasks pinned to one CPU making bpf() calls: 439 of 12,000 "
        "errors uncounted, 1,299 calls missed)"),
}


def keys(facts=None):
    """(KEY,) on a preemptible kernel (or an unknown one: facts None)."""
    return (KEY,) if facts is None or facts.preemptible else ()
