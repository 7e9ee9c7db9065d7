"""bpf_syscall: bpf() errors by command, map type and errno.

One program at bpf()'s exit, no entry program: fexit on the arch's syscall
wrapper (lstrace/arch.py) where trampolines attach, else the raw sys_exit
tracepoint (tp_btf, else raw_tp) filtered on the syscall number; the saved
user registers still hold cmd and attr.  (perf syscalls:* programs are
skipped while bpf_prog_active is raised; none of these is.)  C: bpf/probes/bpf_syscall.bpf.c.
"""
import errno

from .. import arch as archmod
from .. import bpfsys
from ..btf import TYPEDEF
from ..cgen import switch_cases
from ..family import Family
from ..layout import (BPF_CMDS, CMD_NAMES, MAP_ELEM_CMDS, MAP_TYPE_BUCKETS, SYS_ERRNOS,
                      map_type_bucket)
from . import preemption, trial
from .bcc import KFUNC_PREFIXES, kfunc_name
from .tracepoint import TracepointProbe

NAME = "bpf_syscall"
PROBE = TracepointProbe(NAME, (("raw_syscalls", "sys_exit"),),
                        "bpf() errors by command, map type and errno",
                        (("raw_tp", "sys_exit", "lst_sys_exit"),))
# tracepoint mode where tp_btf programs load: the same hook with BTF-typed
# arguments, so the failure path reads pt_regs and the fd table with plain
# loads (plan.func names it; raw_tp is the fallback)
TP_BTF = "tp_btf:sys_exit"
TP_BTF_PROGRAMS = (("tp_btf", "sys_exit", "lst_sys_exit_btf"),)
NAMES = (NAME,)
ORDER = 40
COUNTS = ("syscall_errors",)
CPU_KEYS = (("syscall_errors", "sys_err/s", True),)

# per machine (a view of lstrace/arch.py, kept for its users): the bpf() syscall
# wrapper an fexit attaches to, the pt_regs members (and byte offsets in them)
# holding its first two arguments and the syscall number, and __NR_bpf
SYSCALL_ARCH = {m: {"func": a.syscall_wrapper("bpf"), "arg0": a.regs_arg0, "arg1": a.regs_arg1,
                    "nr": a.regs_nr, "NR": a.nr_bpf} for m, a in archmod.TABLE.items()}


def plan(kernel, p, mode="auto"):
    """fexit on the arch's syscall wrapper where trampolines attach, else tp_btf
    sys_exit, else raw_tp sys_exit (--mode kprobe: raw_tp, no program attached
    through BTF); all need the pt_regs members from BTF."""
    arch = archmod.lookup()
    if arch is None or kernel.btf.member_offset("pt_regs", arch.regs_nr) is None:
        p.reason = f"bpf() arguments not readable on {archmod.machine()} (no pt_regs layout)"
        return p
    func = arch.syscall_wrapper("bpf")
    if mode in ("auto", "fentry") and kernel.btf.func_id(func) is not None:
        why = trial.try_fentry(kernel, func)
        if why is None:
            p.mode, p.func = "fentry", func
            return p
        p.tried["fentry"] = why
    if not kernel.has_tracepoint("raw_syscalls", "sys_exit"):
        p.reason = "tracepoint raw_syscalls:sys_exit does not exist on this kernel"
        return p
    if mode != "kprobe":        # --mode kprobe: no BTF-attached program at all
        btf_id = kernel.btf.find(TYPEDEF, "btf_trace_sys_exit")
        why = bpfsys.trial_tp_btf(btf_id) if btf_id is not None else \
            "no BTF typedef btf_trace_sys_exit"
        if why is None:
            p.mode, p.func = "tracepoint", TP_BTF
            return p
        p.tried["tp_btf"] = why
    why = bpfsys.trial_raw_tracepoint("sys_exit")
    if why:
        p.reason = f"raw tracepoint sys_exit: {why}"
        return p
    p.mode = "tracepoint"
    return p


def blind_spots(mode, facts=None):
    """Its one program (fexit, or tp_btf / raw_tp on sys_exit) runs preemptible, in both modes."""
    return preemption.keys(facts)


# ---- counters: errors by command x map type x errno
def blocks(nprobes):
    return [("sys", (("N_CMD", len(CMD_NAMES)), ("N_MAPTYPE", len(MAP_TYPE_BUCKETS)),
                     ("N_SYSERR", len(SYS_ERRNOS))))]


# ---- C
C_FRAGMENT = "bpf_syscall.bpf.c"


def defines(kernel, plans):
    """Where bpf() keeps its arguments (pt_regs offsets from BTF), the path from
    an fd to its map's type (struct offsets from BTF), and the label tables as
    switch cases."""
    plan = plans[0] if plans else None
    btf = kernel.btf
    arch = archmod.lookup()
    d = {"BPF_SYSCALL_FEXIT": int(bool(plan and plan.mode == "fentry")),
         "NR_BPF": arch.nr_bpf if arch else -1}
    for define, (name, extra) in (("OFF_REGS_ARG0", arch.regs_arg0),
                                  ("OFF_REGS_ARG1", arch.regs_arg1),
                                  ("OFF_REGS_NR", (arch.regs_nr, 0))) if arch else ():
        off = btf.member_offset("pt_regs", name)
        d[define] = off + extra if off is not None else 0
    for define in ("OFF_REGS_ARG0", "OFF_REGS_ARG1", "OFF_REGS_NR"):
        d.setdefault(define, 0)
    for define, (struct, member) in {
            "OFF_TASK_FILES": ("task_struct", "files"), "OFF_FILES_FDT": ("files_struct", "fdt"),
            "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"), "OFF_FDT_FD": ("fdtable", "fd"),
            "OFF_FILE_PRIVATE": ("file", "private_data"),
            "OFF_MAP_TYPE": ("bpf_map", "map_type")}.items():
        off = btf.member_offset(struct, member)
        d[define] = off if off is not None else 0
    d["CMD_CASES"] = switch_cases({c: i for i, c in enumerate(BPF_CMDS)})
    d["SYSERR_CASES"] = switch_cases({getattr(errno, n): i for i, n in enumerate(SYS_ERRNOS)
                                if n != "other"})
    d["MAPTYPE_CASES"] = switch_cases({t: MAP_TYPE_BUCKETS.index(map_type_bucket(t))
                                 for t in range(64)})
    d["IS_MAP_ELEM_CMD(c)"] = "(" + " || ".join(f"(c) == {c}" for c in MAP_ELEM_CMDS) + ")"
    return d


def glue(kernel, plans, latency=False, fallback=False):
    """fentry mode: the fexit on the syscall wrapper (trampolines are not
    skipped while another task's bpf() holds bpf_prog_active); BCC pastes the
    literal function name, so it is generated."""
    return [f"KRETFUNC_PROBE({p.func}, u64 regs, long ret)\n"
            f"{{ return ret >= 0 ? 0 : count_sys_error(regs, ret, 0); }}\n"
            for p in plans if p.available and p.mode == "fentry"]


# ---- attach points
MISSED_CALLS = True     # its one program's recursion_misses are bpf() exits it missed


def attach_points(plan, compiled, latency=False):
    if plan.mode == "fentry":
        return [("kretfunc", plan.func, kfunc_name(compiled, KFUNC_PREFIXES[1], plan.func))]
    return list(TP_BTF_PROGRAMS if plan.func == TP_BTF else PROBE.programs)


def fall_back(plan, why, mode="auto"):
    """A tp_btf program the verifier refused (its typed loads) or that did not
    attach: raw_tp, which reads every field with bpf_probe_read_kernel.  True
    if there is a fallback to attach."""
    if plan.func != TP_BTF:
        return False
    plan.tried["tp_btf"] = why
    plan.mode, plan.func, plan.reason = "tracepoint", "", ""
    return True


# ---- decode
def decode(snap, cpu, lay, words, attached, latency):
    if NAME not in attached:
        return
    nm, ne = len(MAP_TYPE_BUCKETS), len(SYS_ERRNOS)
    for i, n in enumerate(lay.block(words, "sys")):
        if n:
            ci, rest = divmod(i, nm * ne)
            mi, ei = divmod(rest, ne)
            snap.syscall_errors[(cpu, CMD_NAMES[ci], MAP_TYPE_BUCKETS[mi], SYS_ERRNOS[ei])] = n


# ---- metric family
# bpf() lock failures reaching user space: pre-rqspinlock htab EBUSY, gen C
# local storage and 6.15+ htab EDEADLK / ETIMEDOUT
SYS_LOCK_ERRNOS = ("EBUSY", "EDEADLK", "ETIMEDOUT")
SYS_LOCK_CMDS = ("MAP_UPDATE_ELEM", "MAP_DELETE_ELEM")
SYS_LOCK_MAP_TYPES = ("task_storage", "cgrp_storage", "sk_storage", "inode_storage", "hash",
                      "other_rqspinlock")


def families(snap, attached, per_cpu_latency):
    sysc = Family("lstrace_bpf_syscall_errors", "counter",
                  "bpf() syscalls that failed, by command, errno and map type, summed over "
                  "CPUs.", ["cmd", "errno", "map_type"])
    cube = {}
    for (_cpu, cmd, mtype, err), n in snap.syscall_errors.items():
        cube[(cmd, err, mtype)] = cube.get((cmd, err, mtype), 0) + n
    if NAME in attached:      # lock failures reaching user space: zeros from the start
        for key in ((c, e, m) for c in SYS_LOCK_CMDS for e in SYS_LOCK_ERRNOS
                    for m in SYS_LOCK_MAP_TYPES):
            cube.setdefault(key, 0)
    for key in sorted(cube):
        sysc.add(key, cube[key])
    return [sysc]


# ---- top: its own per-CPU column (syscall_errors), only failures (calls are null)
def cpu_counts(snap):
    rows = {}
    for (cpu, _cmd, _mt, _e), n in snap.syscall_errors.items():
        rows.setdefault(cpu, {"syscall_errors": 0})["syscall_errors"] += n
    return rows


def cpu_failures(snap):
    return [(cpu, NAME, n) for (cpu, _cmd, _mt, _e), n in snap.syscall_errors.items()]


def top_row(st, cur, delta, rate, r):
    r["calls_per_s"] = r["calls_total"] = None
    r["failures_per_s"] = rate(sum(delta.syscall_errors.values()))
    r["failures_total"] = sum(cur.syscall_errors.values())
    for key, err in (("busy_total", "EBUSY"), ("deadlock_total", "EDEADLK"),
                     ("timeout_total", "ETIMEDOUT")):
        r[key] = sum(n for k, n in cur.syscall_errors.items() if k[3] == err)


TOP_SECTION = ("syscall_errors", "bpf() syscall errors",
               ["CPU", "bpf cmd", "map type", "errno", "/s", "total"])


def top_rows(cur, delta, rate):
    rows = [{"cpu": cpu, "cmd": cmd, "map_type": mt, "errno": err,
             "per_s": rate(delta.syscall_errors.get((cpu, cmd, mt, err), 0)), "total": n}
            for (cpu, cmd, mt, err), n in cur.syscall_errors.items() if n]
    rows.sort(key=lambda r: (-r["per_s"], -r["total"], r["cpu"], r["cmd"]))
    return rows


def top_cells(r, num):
    return [r["cpu"], r["cmd"], r["map_type"], r["errno"], num(r["per_s"]), r["total"]]


# ---- hist
NO_HIST = "bpf_syscall counts errors only, it has no latency histogram"
