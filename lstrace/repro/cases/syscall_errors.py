"""syscall-errors: bpf() map commands with known errnos, from a pinned thread.

Each round, per map: update(NOEXIST) ok, update(NOEXIST) EEXIST, lookup ok,
delete ok, lookup ENOENT, delete ENOENT. Task storage is keyed by a pidfd of
this process, cgroup storage by an fd of this process's cgroup v2 cgroup.
CPUs run one after another: every CPU works on the same task and cgroup.
"""
import errno
import os
import struct

from ... import bpfcalls, bpfsys
from ...bpfcalls import map_delete_elem, map_lookup_elem, map_update_elem, pidfd_open
from ...layout import BPF_CMDS
from ...workload import pinned
from .. import stats
from ..host import has_func
from ..result import CaseResult
from .base import Case, NotRunnable, load

VALUE = struct.pack("<Q", 42)
# (cmd, flags, expected errno) per round
SEQUENCE = [(bpfsys.MAP_UPDATE_ELEM, bpfcalls.NOEXIST, 0),
            (bpfsys.MAP_UPDATE_ELEM, bpfcalls.NOEXIST, errno.EEXIST),
            (bpfsys.MAP_LOOKUP_ELEM, 0, 0),
            (bpfsys.MAP_DELETE_ELEM, 0, 0),
            (bpfsys.MAP_LOOKUP_ELEM, 0, errno.ENOENT),
            (bpfsys.MAP_DELETE_ELEM, 0, errno.ENOENT)]
FUNCS = {"task_storage": "bpf_pid_task_storage_{}_elem", "cgrp_storage": "bpf_cgrp_storage_{}_elem",
         "hash": "htab_map_{}_elem"}


def cmd_name(cmd):
    """"map_update_elem" for BPF_MAP_UPDATE_ELEM (lstrace.layout's names)."""
    return BPF_CMDS[cmd].lower()


def cgroup2_dir():
    """This process's cgroup v2 directory, or None without a cgroup2 mount."""
    mnt = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                mnt = left.split()[4]
                break
    if not mnt:
        return None
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return os.path.join(mnt, line.strip()[3:].lstrip("/"))
    return mnt


def errname(e):
    return "ok" if e == 0 else errno.errorcode.get(e, str(e))


class SyscallErrors(Case):
    name = "syscall-errors"
    summary = "bpf() map update/lookup/delete with known errnos (EEXIST, ENOENT)"
    applies = "every kernel (cgroup storage 6.2+)"

    def run(self, duration, cpus, rounds=100):
        r = CaseResult(self.name, cpus=list(cpus), params={"rounds": rounds})
        keys, objs = {}, []
        try:
            o = load("maps_task")
            objs.append(o)
            pidfd = pidfd_open(os.getpid())
            keys["task_storage"] = (o.map_fd("task_map"), struct.pack("<i", pidfd), pidfd)
            keys["hash"] = (o.map_fd("hash_map"), struct.pack("<i", 7), None)
            cg = cgroup2_dir()
            if has_func("bpf_cgrp_storage_get") and cg:
                try:
                    o = load("maps_cgrp")
                    objs.append(o)
                    cgfd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
                    keys["cgrp_storage"] = (o.map_fd("cgrp_map"), struct.pack("<i", cgfd), cgfd)
                except NotRunnable as e:
                    r.extra["skipped"] = {"cgrp_storage": str(e)}
            for cpu in cpus:
                r.errnos[cpu] = {}
                with pinned(cpu):
                    for _ in range(rounds):
                        for kind, (fd, key, _) in keys.items():
                            self.one_round(r, cpu, kind, fd, key)
        finally:
            for _, _, extra_fd in keys.values():
                if extra_fd is not None:
                    os.close(extra_fd)
            for o in objs:
                o.close()
        for kind in keys:
            for cmd, flags, exp in SEQUENCE:
                g = f"{kind}:{cmd_name(cmd)}"
                e = r.expected.setdefault(g, {})
                e[errname(exp)] = e.get(errname(exp), 0) + rounds
            r.functions += [FUNCS[kind].format(op) for op in ("update", "lookup", "delete")]
        r.functions.append("syscalls:sys_exit_bpf")
        r.sum_groups()
        r.affected = any(c["busy"] or c["deadlock"] or c["timeout"] for c in r.per_cpu.values())
        r.verdict = self.verdict(r)
        return r

    @staticmethod
    def one_round(r, cpu, kind, fd, key):
        for cmd, flags, _ in SEQUENCE:
            if cmd == bpfsys.MAP_UPDATE_ELEM:
                ret = map_update_elem(fd, key, VALUE, flags)
            elif cmd == bpfsys.MAP_LOOKUP_ELEM:
                ret = map_lookup_elem(fd, key, len(VALUE))[0]
            else:
                ret = map_delete_elem(fd, key)
            e = -ret if ret < 0 else 0
            g = f"{kind}:{cmd_name(cmd)}"
            per = r.errnos[cpu].setdefault(g, {})
            per[errname(e)] = per.get(errname(e), 0) + 1
            c = r.groups.setdefault(g, {}).setdefault(cpu, stats.zero())
            c["calls"] += 1
            c[stats.category(e)] += 1

    @staticmethod
    def verdict(r):
        bad = []
        for g, exp in r.expected.items():
            got = {}
            for per in r.errnos.values():
                for name, n in per.get(g, {}).items():
                    got[name] = got.get(name, 0) + n
            want = {k: v * len(r.cpus) for k, v in exp.items()}
            if got != want:
                bad.append(f"{g} got {got}, expected {want}")
        n = sum(c["calls"] for c in r.per_cpu.values())
        if bad:
            return f"{n} bpf() map calls; UNEXPECTED errnos: " + "; ".join(bad)
        return f"{n} bpf() map calls on CPUs {','.join(map(str, r.cpus))}: every errno as designed"
