"""storage-deadlock: a task-storage delete nested inside a task-storage delete
of the same task on the same CPU (bpf/repro/storage_deadlock.bpf.c).

7.0+ (generation C: local storage takes rqspinlocks, no busy counters): each
syscall of ours deletes element a (created just before, beside element b), and
bpf_selem_unlink() holds the task's local_storage->lock while it calls
bpf_selem_unlink_storage_nolock_misc (7.3; 7.2: bpf_selem_unlink_storage_nolock),
where an fentry program runs; that
program deletes b of the same task, which needs the same lock: AA, -EDEADLK
(-ETIMEDOUT if detection ever fell back to the timeout), counted by the
program itself per CPU.  Needs fentry (the lab guests); this host refuses it.
groups: "bpf_task_storage_delete:nested" (the call that fails),
"bpf_task_storage_delete:outer" (the delete it nests in), and the set-up
gets "bpf_task_storage_get:b", "bpf_task_storage_get:a".
"""
import os
import time

from ... import bpfsys
from ...workload import pinned
from .. import stats
from ..host import kernel
from ..result import CaseResult
from .base import Case, NotRunnable, aa_made, load, set_cfg

NESTED = "bpf_task_storage_delete:nested"
GROUPS = {"bpf_task_storage_get:b": 0, "bpf_task_storage_get:a": 1,
          "bpf_task_storage_delete:outer": 2, NESTED: 3}
# fentry programs by the function they attach to, first choice first: each is
# called with the storage lock held; 7.3 inlines the second into the delete
HOOKS = {"bpf_selem_unlink_storage_nolock_misc": "on_unlink_misc",
         "bpf_selem_unlink_storage_nolock": "on_unlink"}


def hook():
    """The first of HOOKS in this kernel's BTF, or None."""
    return next((f for f in HOOKS if kernel().btf.func_id(f) is not None), None)


class StorageDeadlock(Case):
    name = "storage-deadlock"
    summary = "task-storage delete nested in a delete of the same task: rqspinlock AA -EDEADLK"
    applies = "7.0+ (local storage on rqspinlock) where fentry is allowed (the lab guests)"

    def check(self):
        k = kernel()
        if k.generation != "C":
            return (f"local storage takes no rqspinlock here (generation {k.generation}: "
                    "busy counters; see task-busy)")
        f = hook()
        if f is None:
            return f"none of {', '.join(HOOKS)} is in this kernel's BTF"
        err = bpfsys.trial_fentry(k.btf.func_id(f))      # try it: the only honest test
        if err is None:
            return None
        if "EPERM" in err:
            return "fentry programs are forbidden here (EPERM)"
        return f"fentry on {f} fails here ({err})"

    def run(self, duration, cpus):
        cpus = list(cpus)
        r = CaseResult(self.name, cpus=cpus, duration=duration)
        f = hook()
        with load("storage_deadlock", skip=[p for h, p in HOOKS.items() if h != f]) as obj:
            try:
                obj.attach("on_enter")
                obj.attach(HOOKS[f])
            except OSError as e:
                raise NotRunnable(f"attaching failed: {e}") from None
            share = duration / len(cpus)
            for cpu in cpus:
                with pinned(cpu):
                    set_cfg(obj, 0, 0, 0, os.getpid(), 1)
                    end = time.monotonic() + share
                    while time.monotonic() < end:
                        for _ in range(200):
                            os.getppid()
                    set_cfg(obj, 0, 0, 0, os.getpid(), 0)
            obj.detach()
            r.groups = stats.read_groups(obj.map_fd("stats"), GROUPS, cpus)
        for per in r.groups.values():        # a NULL get(F_CREATE): errno lost on 7.x
            for c in per.values():
                c["other"] += c["busy"]
                c["busy"] = 0
        r.sum_groups()
        r.functions = ["bpf_task_storage_get", "bpf_task_storage_delete", "bpf_selem_unlink", f]
        nested = r.groups[NESTED]
        if not stats.total(nested)["calls"]:
            raise NotRunnable(f"the nested delete never ran: {f} is not called out of line "
                              f"under the storage lock on this kernel")
        r.affected = any(c["deadlock"] or c["timeout"] for c in nested.values())
        t = stats.total(nested)
        by_cpu = ", ".join(f"CPU {c}: {v['deadlock']}+{v['timeout']} of {v['calls']}"
                           for c, v in nested.items())
        r.verdict = (f"a task-storage delete nested in a delete of the same task failed "
                     f"{t['deadlock']} times -EDEADLK, {t['timeout']} -ETIMEDOUT of "
                     f"{t['calls']} ({by_cpu}): the task's local_storage->lock is an "
                     f"rqspinlock this CPU holds (AA)")
        return r

    def made_rq(self, r):
        """The nested calls' failures: AA on the task's storage lock by construction."""
        return aa_made(r.groups.get(NESTED, {}), "local_storage")
