"""helper-calls: known numbers of local-storage helper calls and NULL/-ENOENT.

Per CPU, one after another (cgroup storage is shared between threads of the
cgroup, so runs must not overlap), the calling thread pinned to that CPU runs
each storage type's program once with BPF_PROG_TEST_RUN.
"""

from ...bpfcalls import prog_test_run
from ...workload import pinned
from .. import stats
from ..host import BadArgument, has_func, kernel
from ..result import CaseResult
from .base import Case, NotRunnable, RunFailed, load, set_cfg

PKT = bytes(14) + bytes([0x45]) + bytes(53)   # any 68-byte packet for tc test runs


class HelperCalls(Case):
    name = "helper-calls"
    summary = "get/delete helpers called a known number of times (NULL / -ENOENT by design)"
    applies = "every kernel (cgroup storage 6.2+)"

    # storage type -> (object, program, test-run kind, get name, delete name)
    KINDS = {
        "task": ("helper_task", "task_calls", "raw_tp", "bpf_task_storage_get",
                 "bpf_task_storage_delete"),
        "cgrp": ("helper_cgrp", "cgrp_calls", "raw_tp", "bpf_cgrp_storage_get",
                 "bpf_cgrp_storage_delete"),
        "sk": ("helper_sk", "sk_calls", "tc", "bpf_sk_storage_get", "bpf_sk_storage_delete"),
    }

    def run(self, duration, cpus, n=1000, nulls=400, deletes=10, kinds=("task", "cgrp", "sk")):
        if not (0 <= nulls <= n) or deletes < 1:
            raise BadArgument("need 0 <= nulls <= n and deletes >= 1")
        r = CaseResult(self.name, cpus=list(cpus), duration=0.0,
                       params={"n": n, "nulls": nulls, "deletes": deletes})
        gen = kernel().generation
        skipped = {}
        for kind in kinds:
            objname, prog, ptype, get, delete = self.KINDS[kind]
            if kind == "cgrp" and not has_func("bpf_cgrp_storage_get"):
                skipped[kind] = "no cgroup storage (needs 6.2+)"
                continue
            try:
                obj = load(objname)
            except NotRunnable as e:
                skipped[kind] = str(e)
                continue
            with obj:
                set_cfg(obj, n, nulls, deletes)
                fd = obj.prog_fd(prog)
                for cpu in cpus:
                    with pinned(cpu):
                        if ptype == "raw_tp":
                            ret, retval = prog_test_run(fd, cpu=cpu)
                        else:
                            # one call per run; the socket lives for the whole test run
                            ret, retval = prog_test_run(fd, data=PKT, repeat=n + deletes)
                    if ret < 0 or retval != 0:
                        raise RunFailed(f"{prog} test run failed on CPU {cpu}: "
                                           f"ret={ret} retval={retval}")
                g = stats.read_groups(obj.map_fd("stats"), {get: 0, delete: 1}, cpus)
            if gen == "C":           # errno of a NULL get is lost there
                for c in g[get].values():
                    c["other"] += c["busy"]
                    c["busy"] = 0
            r.groups.update(g)
            r.functions += self.kernel_functions(kind, gen, ptype)
            ok_del = 1 if n > nulls else 0
            r.expected[get] = {"calls": n, "ok": n - nulls, "not_found": nulls}
            r.expected[delete] = {"calls": deletes, "ok": ok_del, "not_found": deletes - ok_del}
        if not r.groups:
            raise NotRunnable("; ".join(f"{k}: {v}" for k, v in skipped.items()))
        r.extra["skipped"] = skipped
        r.sum_groups()
        r.affected = any(c["busy"] or c["deadlock"] or c["timeout"] for c in r.per_cpu.values())
        r.verdict = self.verdict(r)
        return r

    @staticmethod
    def kernel_functions(kind, gen, ptype):
        # raw_tp programs get the _recur helpers on generation B (bpf_prog_check_recur)
        if kind == "task" and gen == "B":
            return ["bpf_task_storage_get_recur", "bpf_task_storage_delete_recur"]
        return [f"bpf_{kind}_storage_get", f"bpf_{kind}_storage_delete"]

    @staticmethod
    def verdict(r):
        parts = []
        for g, exp in r.expected.items():
            t = stats.total(r.groups[g])
            match = all(t[k] * 1 == v * len(r.cpus) for k, v in exp.items())
            parts.append(f"{g}: {t['calls']} calls, {t['ok']} ok, {t['not_found']} absent, "
                         f"{t['busy']} busy ({'as designed' if match else 'UNEXPECTED'})")
        return "; ".join(parts)
