"""task-busy: spurious busy NULL / -EBUSY of local storage helpers (gen A/B).

Threads pinned to one CPU keep that CPU inside the storage lock with pidfd
(or cgroup fd) map updates and deletes; a raw_tp program on
local_timer_entry (arm64: hrtimer_expire_entry; lstrace/arch.py), on each tick
that interrupts one of those threads, looks
the thread's task (or cgroup) storage up and deletes it when present, else
creates it with get(F_CREATE). A NULL from that create and -EBUSY from that
delete are busy failures: a missing element with F_CREATE is the one case
_recur/trylock gets return NULL for, and a delete only tries an element that
exists. groups["bpf_*_storage_get"] merges both flavours of get (lookups
give not_found, creates ok or busy); extra["by_flags"] splits them.
mode "prog" (default) runs the updates from a syscall program through
bpf_sys_bpf (the CPU is in the locked section far more often); mode
"python" issues the bpf() calls from Python.
"""
import os
import struct
import time

from ...bpfcalls import map_delete_elem, map_update_elem, pidfd_open, prog_test_run
from ...bpfsys import MAP_DELETE_ELEM, MAP_UPDATE_ELEM
from .. import stats
from ..host import BadArgument, has_var, kernel
from ..result import CaseResult
from .base import Case, NotRunnable, RunFailed, load, set_cfg
from .syscall_errors import cgroup2_dir, cmd_name
from .threads import on_cpus

VAR = {"task": "bpf_task_storage_busy", "cgrp": "bpf_cgrp_storage_busy"}


class TaskBusy(Case):
    name = "task-busy"
    summary = "timer-IRQ get(F_CREATE)/delete vs pinned map updates: spurious busy failures"
    applies = "kernels with bpf_task_storage_busy (5.13-6.19); cgroup part: 6.2-6.19"
    needs = ("var", "bpf_task_storage_busy", "it has no busy counter (7.0+)")

    def run(self, duration, cpus, kinds=("task", "cgrp"), cpu=None, threads=2, mode="prog",
            batch=500):
        if mode not in ("prog", "python"):
            raise BadArgument("mode is 'prog' or 'python'")
        cpus = list(cpus)
        cpu = cpus[0] if cpu is None else cpu
        if cpu not in cpus:
            cpus.append(cpu)
        r = CaseResult(self.name, cpus=cpus, duration=duration,
                       params={"kinds": list(kinds), "cpu": cpu, "threads": threads,
                               "mode": mode, "batch": batch})
        todo = [k for k in kinds if has_var(VAR[k])]
        skipped = {k: f"no {VAR[k]} in BTF" for k in kinds if k not in todo}
        for kind in todo:
            try:
                self._one(r, kind, duration / len(todo), cpu, threads, mode, batch)
            except NotRunnable as e:
                skipped[kind] = str(e)
        if not r.groups:
            raise NotRunnable("; ".join(f"{k}: {v}" for k, v in skipped.items()))
        r.extra["skipped"] = skipped
        r.sum_groups()
        busy = {c: sum(per.get(c, {}).get("busy", 0) for g, per in r.groups.items()
                       if not g.startswith("hammer")) for c in cpus}
        r.extra["busy_per_cpu"] = busy
        r.affected = any(busy.values())
        r.verdict = self.verdict(r)
        return r

    def _one(self, r, kind, duration, cpu, threads, mode, batch):
        gen = kernel().generation
        with _object(r, kind, gen) as obj:
            set_cfg(obj, 0, 0, 0, os.getpid())
            map_fd = obj.map_fd("hammered")
            key_fd = _key_fd(kind)
            py = {}      # python mode: {(cmd, ret): n}, summed over the threads
            try:
                obj.attach("irq")
                work_for = (_prog_work(obj.prog_fd("hammer"), map_fd, key_fd, batch)
                            if mode == "prog" else _python_work(map_fd, key_fd, py))
                on_cpus(work_for, [cpu] * threads, duration)
            finally:
                obj.detach()     # the timer also interrupts this thread: stop counting first
                os.close(key_fd)
            g = _read(obj, kind, mode, r.cpus)
        _merge_gets(r, kind, g)
        if mode == "python":
            _add_python(g, kind, py, r.cpus, cpu)
        r.groups.update(g)
        r.functions += _functions(kind, gen)

    @staticmethod
    def verdict(r):
        parts = []
        for kind in ("task", "cgrp"):
            for op, g in (("get(F_CREATE)", f"bpf_{kind}_storage_get(F_CREATE)"),
                          ("delete", f"bpf_{kind}_storage_delete")):
                per = r.extra.get("by_flags", {}).get(g) or r.groups.get(g)
                for c, v in (per or {}).items():
                    if v["calls"]:
                        parts.append(f"{kind} storage {op} failed spuriously {v['busy']} of "
                                     f"{v['calls']} times on CPU {c}")
        return "; ".join(parts) or "the timer interrupt never hit the pinned threads"


def _object(r, kind, gen):
    """The loaded object for `kind`; on gen A the task one that tells busy NULL
    lookups apart (it needs per-CPU symbols in kallsyms), else the plain one."""
    if kind == "task" and gen == "A":
        try:
            return load("busy_task_a")
        except NotRunnable as e:
            r.extra["lookup_busy"] = f"NULL lookups counted as absent: {e}"
    return load(f"busy_{kind}")


def _key_fd(kind):
    """The hammered map's key: a pidfd of this process, or its cgroup2 directory."""
    if kind == "task":
        return pidfd_open(os.getpid())
    cg = cgroup2_dir()
    if not cg:
        raise NotRunnable("no cgroup2 mount")
    return os.open(cg, os.O_RDONLY | os.O_DIRECTORY)


def _prog_work(fd, map_fd, key_fd, batch):
    """mode prog: the hammer syscall program, `batch` update+delete per run."""
    args = struct.pack("<iiI", map_fd, key_fd, batch)

    def work_for(_c):
        def work(deadline):
            while time.monotonic() < deadline:
                ret, _ = prog_test_run(fd, ctx=args)
                if ret < 0:
                    raise RunFailed(f"hammer test run failed: {os.strerror(-ret)}")
        return work
    return work_for


def _python_work(map_fd, key_fd, py):
    """mode python: update+delete from Python, each outcome counted into py."""
    key, val = struct.pack("<i", key_fd), struct.pack("<Q", 1)

    def work_for(_c):
        def work(deadline):
            mine = {}
            while time.monotonic() < deadline:
                for _ in range(100):
                    for cmd, ret in ((MAP_UPDATE_ELEM, map_update_elem(map_fd, key, val)),
                                     (MAP_DELETE_ELEM, map_delete_elem(map_fd, key))):
                        mine[(cmd, ret)] = mine.get((cmd, ret), 0) + 1
            for k, n in mine.items():
                py[k] = py.get(k, 0) + n
        return work
    return work_for


def _read(obj, kind, mode, cpus):
    names = {f"bpf_{kind}_storage_get(F_CREATE)": 0, f"bpf_{kind}_storage_delete": 1,
             f"bpf_{kind}_storage_get(0)": 4}
    if mode == "prog":
        names.update({f"hammer-{kind}:map_update_elem": 2,
                      f"hammer-{kind}:map_delete_elem": 3})
    return stats.read_groups(obj.map_fd("stats"), names, cpus)


def _merge_gets(r, kind, g):
    """One group per helper, as a tracer sees them; the split goes to extra."""
    create = g.pop(f"bpf_{kind}_storage_get(F_CREATE)")
    lookup = g.pop(f"bpf_{kind}_storage_get(0)")
    r.extra.setdefault("by_flags", {}).update({f"bpf_{kind}_storage_get(F_CREATE)": create,
                                               f"bpf_{kind}_storage_get(0)": lookup})
    merged = {c: stats.zero() for c in r.cpus}
    for c in r.cpus:
        stats.add(merged[c], create[c])
        stats.add(merged[c], lookup[c])
    g[f"bpf_{kind}_storage_get"] = merged


def _add_python(g, kind, py, cpus, cpu):
    """mode python: the Python calls' outcomes as hammer-<kind>:<cmd> groups."""
    for (cmd, ret), n in py.items():
        c = g.setdefault(f"hammer-{kind}:{cmd_name(cmd)}", {x: stats.zero() for x in cpus})[cpu]
        c["calls"] += n
        c[stats.category(-ret if ret < 0 else 0)] += n


def _functions(kind, gen):
    """The kernel functions this kind's run exercises."""
    if kind == "task" and gen == "B":
        helpers = ["bpf_task_storage_get_recur", "bpf_task_storage_delete_recur"]
    else:
        helpers = [f"bpf_{kind}_storage_get", f"bpf_{kind}_storage_delete"]
    return helpers + (["bpf_pid_task_storage_update_elem", "bpf_pid_task_storage_delete_elem"]
                      if kind == "task" else
                      ["bpf_cgrp_storage_update_elem", "bpf_cgrp_storage_delete_elem"])
