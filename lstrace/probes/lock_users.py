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
from .helpers import HELPERS
from .helpers.catalogue import lock_user
from .rqspinlock_kernel import nmi_note

LOCK_USERS = tuple(c for c in CALLERS if c != "other")
_PARTIAL = ("queued slow path only (lock:contention_end): pending-path failures and, "
            "6.19+, AA found before queueing are missed")
# the helper probes that count a lock user's failures at its boundary
_BOUNDARY = {u: tuple(p.name for p in HELPERS if lock_user(p.name) == u)
             for u in ("htab", "local_storage")}
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
        elif user == "htab" and any(on(n) for n in _BOUNDARY["htab"]):
            view = ("exact", "hash-map update/delete returns (--probes +maps); kind from the "
                             "key's bucket lock in this CPU's held locks (fentry; kprobe mode: "
                             "unknown, a kretprobe sees no key); other hash-map ops "
                             "(lookup_and_delete, batches): " + _PARTIAL)
        elif user == "htab":
            view = (partial[0], partial[1] + "; --probes +maps counts every update/delete")
        elif user == "local_storage" and generation in ("A", "B"):
            view = ("none", "local storage takes no rqspinlock before 7.0 (busy counters: "
                            "lstrace_helper_failures_total reason busy)")
        elif user == "local_storage" and any(on(n) for n in _BOUNDARY["local_storage"]):
            view = ("exact", "the entry points' returns (gets, deletes, map syscalls; also "
                             "lstrace_helper_cpu_failures_total); a deadlock is AA when this CPU "
                             "holds the owner's storage lock (task, cgroup, socket), ABBA when it "
                             "holds neither that lock nor a bucket lock of the map, else unknown "
                             "(inode storage, pidfd map syscalls, kprobe mode: no owner)")
        elif user in ("lru", "ringbuf", "lpm_trie", "queue_stack", "freelist") and contention:
            view = ("partial", _NOTRACE)
        else:
            view = partial
        out.append((user,) + view)
    return out


def unseen_users(probes):
    """The lock users whose failures are counted at lock:contention_end only
    (no boundary probe attached): their counts are what lstrace could not see
    at a boundary ({probe name: (available, mode)} as in views)."""
    return [u for u, view, _how in views(probes, "C") if view == "partial"]


def kinds_note(kernel):
    """How lock:contention_end and the hash-map boundary decide AA vs ABBA on
    this kernel, or why they cannot (their failures then count with kind
    'unknown'), and how a failure becomes nmi."""
    if kernel.percpu_var_addr("rqspinlock_held_locks"):
        held = ("AA / ABBA at lock:contention_end and at the hash-map and local-storage "
                "boundaries: from this CPU's held-locks table (rqspinlock_held_locks, located "
                "through kallsyms)")
    else:
        held = ("AA / ABBA at lock:contention_end: unknown here (its failures count with kind "
                "'unknown'): the per-CPU held-locks table cannot be located, kallsyms has no "
                "data symbols (CONFIG_KALLSYMS_ALL off); the kfunc probe's kinds come from its "
                "report and are unaffected")
    return f"{held}. {nmi_note(kernel)}"
