"""recursion: storage helpers called from an fentry on bpf_local_storage_update.

Needs fentry (the lab guests); this host refuses fentry with EPERM, and the
case then says so. Expected: generation A/B -EBUSY deletes and busy NULL gets
in the nested calls; generation C recursion_misses on the fentry program
and/or -EDEADLK.
"""
import os

from ... import bpfsys
from ...workload import pinned
from .. import stats
from ..host import kernel
from ..result import CaseResult
from .base import Case, NotRunnable, load, set_cfg

GROUPS = {"sys_enter:bpf_task_storage_get(b)": 0, "sys_enter:bpf_task_storage_get(a)": 1,
          "sys_enter:bpf_task_storage_delete(a)": 2,
          "fentry:bpf_task_storage_delete(b)": 3, "fentry:bpf_task_storage_get(a)": 4}


class Recursion(Case):
    name = "recursion"
    summary = "get/delete from fentry on bpf_local_storage_update (task_ls_recursion)"
    applies = "kernels that allow fentry (the lab guests); not this host"

    def check(self):
        tid = kernel().btf.func_id("bpf_local_storage_update")
        if tid is None:
            return "bpf_local_storage_update is not in this kernel's BTF"
        err = bpfsys.trial_fentry(tid)      # try it: the only honest test
        if err is None:
            return None
        if "EPERM" in err:
            return "fentry programs are forbidden here (EPERM)"
        return f"fentry on bpf_local_storage_update fails here ({err})"

    def run(self, duration, cpus, syscalls=100):
        cpus = list(cpus)
        r = CaseResult(self.name, cpus=cpus, params={"syscalls": syscalls})
        try:
            obj = load("recursion")
        except NotRunnable as e:
            if "EPERM" in str(e):
                raise NotRunnable("fentry programs are forbidden here (EPERM)") from None
            raise
        with obj:
            try:
                obj.attach("on_enter")
                obj.attach("on_update")
            except OSError as e:
                raise NotRunnable(f"attaching failed: {e}") from None
            for cpu in cpus:
                with pinned(cpu):
                    set_cfg(obj, 0, 0, 0, os.getpid(), 1)
                    for _ in range(syscalls):
                        os.getppid()
                    set_cfg(obj, 0, 0, 0, os.getpid(), 0)
            obj.detach()
            r.groups = stats.read_groups(obj.map_fd("stats"), GROUPS, cpus)
            r.extra["recursion_misses"] = {
                p: bpfsys.prog_info(obj.prog_fd(p)).recursion_misses for p in ("on_enter", "on_update")}
        gen = kernel().generation
        if gen == "C":
            for per in r.groups.values():
                for c in per.values():
                    c["other"] += c["busy"]    # NULL get: errno lost on 7.x
                    c["busy"] = 0
        r.sum_groups()
        r.functions = (["bpf_task_storage_get_recur", "bpf_task_storage_delete_recur"]
                       if gen == "B" else ["bpf_task_storage_get", "bpf_task_storage_delete"])
        r.functions.append("bpf_local_storage_update")
        nested = {g: stats.total(per) for g, per in r.groups.items() if g.startswith("fentry")}
        fails = sum(t["busy"] + t["deadlock"] + t["timeout"] + t["other"] for t in nested.values())
        misses = r.extra["recursion_misses"]["on_update"]
        r.affected = bool(fails or misses)
        r.verdict = (f"nested helper calls failed {fails} times "
                     f"({', '.join(f'{g}: {t}' for g, t in nested.items())}); "
                     f"fentry recursion_misses {misses}")
        return r
