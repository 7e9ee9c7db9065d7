"""Which view lstrace has of each rqspinlock lock user on this kernel.

rqspinlock.c is notrace (6.17+), so no probe sees the locks themselves: a
failure is seen where it leaves, at the first traceable function its lock
user returns through, or not at all.  What that boundary is depends on the
user (kernel/bpf/*.c; ringbuf, LPM trie, queue/stack, LRU lists and the
per-CPU freelist are built without ftrace since about 6.14, and the verifier
calls their map ops directly from BPF programs, so they have none), and on
which probes are attached.  Doctor prints these views and serve exports them
(lstrace_rqspinlock_view_info), beside the counts they qualify.

  exact    every failure is counted, per CPU and errno, at its boundary
  partial  only the failures of the queued slow path, at lock:contention_end
           (pending-path failures and, 6.19+, AA found before queueing are not)
  none     no view: no rqspinlock on this kernel, or no probe attached
"""
from ..layout import CALLERS
from .helpers import HELPERS, MAP_PROBES

LOCK_USERS = tuple(c for c in CALLERS if c != "other")
_PARTIAL = ("queued slow path only (lock:contention_end): pending-path failures and, "
            "6.19+, AA found before queueing are missed")
_STORAGE_PROBES = tuple(p.name for p in HELPERS if not p.group)
_NOTRACE = "no traceable boundary (notrace map ops, called directly by BPF programs): " + \
    _PARTIAL


def views(probes, generation):
    """[(lock user, view, how)] from {probe name: (available, mode)} of the
    planned or attached probes and the kernel's generation (A, B, C)."""
    def on(name):
        return probes.get(name, (False, ""))[0]
    contention = on("rqspinlock")
    partial = ("partial", _PARTIAL) if contention else \
        ("none", "the rqspinlock probe is not attached (or no rqspinlock on this kernel)")
    out = []
    for user in LOCK_USERS:
        if user == "res_spin_lock" and on("rqspinlock_kfunc"):
            mode = probes["rqspinlock_kfunc"][1]
            view = ("exact", f"every bpf_res_spin_lock failure at its stderr stream report "
                             f"({mode}), kind from the report's held locks")
        elif user == "htab" and any(on(n) for n in MAP_PROBES):
            view = ("exact", "hash-map update/delete returns (--probes +maps: "
                             "lstrace_map_cpu_failures_total); other map ops: " + _PARTIAL)
        elif user == "htab":
            view = (partial[0], partial[1] + "; --probes +maps counts every update/delete")
        elif user == "local_storage" and generation in ("A", "B"):
            view = ("none", "local storage takes no rqspinlock before 7.0 (busy counters: "
                            "lstrace_helper_failures_total reason busy)")
        elif user == "local_storage" and any(on(n) for n in _STORAGE_PROBES):
            view = ("exact", "helper, bpf_local_storage_update and bpf_selem_* returns "
                             "(lstrace_helper_failures_total, reasons deadlock/timeout)")
        elif user in ("lru", "ringbuf", "lpm_trie", "queue_stack", "freelist") and contention:
            view = ("partial", _NOTRACE)
        else:
            view = partial
        out.append((user,) + view)
    return out


def kinds_note(kernel):
    """How lock:contention_end decides AA vs ABBA on this kernel, or why it
    cannot (its failures then count with kind 'unknown')."""
    if kernel.percpu_var_addr("rqspinlock_held_locks"):
        return ("AA / ABBA at lock:contention_end: from this CPU's held-locks table "
                "(rqspinlock_held_locks, located through kallsyms)")
    return ("AA / ABBA at lock:contention_end: unknown here (its failures count with kind "
            "'unknown'): the per-CPU held-locks table cannot be located, kallsyms has no "
            "data symbols (CONFIG_KALLSYMS_ALL off); the kfunc probe's kinds come from its "
            "report and are unaffected")
