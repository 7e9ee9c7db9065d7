"""rqspinlock: make bpf_res_spin_lock fail with -EDEADLK / -ETIMEDOUT on purpose.

Kinds (programs in bpf/repro/rqspin.bpf.c):
  aa         per-CPU lock taken twice: pending-bit path, no contention tracepoint
  abba       A->B on even, B->A on odd CPUs of the list: pending path on 2 CPUs
  timeout    34 nested locks then AA: -ETIMEDOUT after 250 ms, pending path
  aa-queued  all CPUs on one lock; the holder retakes it only once another
             CPU spins on it: the failure goes through the queued path and
             is the one kind lock:contention_end(ret < 0) sees.
result.visible[cpu] is measured, not assumed: the object's own raw_tp on
lock:contention_end counts ret < 0 on the workload's own locks, per CPU
(extra["visible_by_kind"] splits it). Measured: on 6.18 every aa-queued
failure and nothing else shows there (off by one now and then when the host
stalls a vCPU: a setup lock times out in the queue, or an AA runs before the
stalled waiter set the pending bit); on 7.3 (AA found before queueing) none
of AA, ABBA or aa-queued does.
"""
from ...bpfcalls import map_lookup_elem, prog_test_run
from ...workload import pinned
from .. import stats
from ..host import BadArgument
from ..result import CaseResult
from .base import Case, RunFailed, load
from .helper_calls import PKT
from .threads import on_cpus

KINDS = ("aa", "abba", "timeout", "aa-queued")
# kind -> (stats group of setup locks, of the provoking call)
GROUPS = {"aa": (0, 1), "abba": (2, 3), "timeout": (4, 5), "aa-queued": (6, 7)}
G_LONELY = 8
SEEN = {"aa": 9, "abba": 10, "timeout": 11, "aa-queued": 12}   # on_end's groups
REPEAT = 10        # runs per test-run call: bounds how far a thread overshoots
# What a lock:contention_end observer cannot see (kernel/bpf/rqspinlock.c)
BLIND_SPOT = ("lock:contention_end fires on the queued slow path only: AA and ABBA "
              "deadlocks found while spinning on the pending bit, and a pending waiter's "
              "timeout, return without it; on 6.19+ the AA check also runs before queueing "
              "(087849cca31d), so a queued-path AA is missed too")


def failures(groups, seen, cpus):
    """{"made", "visible", "not_visible", "blind_spot"}: the workload's own
    failures per CPU and kind (a kind's setup locks included: they fail only
    when a vCPU stalls) vs those its raw_tp saw at contention_end (ret < 0)."""
    made, visible = {}, {}
    for c in cpus:
        m = {"by_kind": {}, "deadlock": 0, "timeout": 0, "other": 0, "total": 0}
        for g, per in groups.items():
            kind = g.split(":")[1]
            v = per[c]
            n = v["calls"] - v["ok"]
            m["by_kind"][kind] = m["by_kind"].get(kind, 0) + n
            m["deadlock"] += v["deadlock"]
            m["timeout"] += v["timeout"]
            m["other"] += n - v["deadlock"] - v["timeout"]
            m["total"] += n
        made[c] = m
        s = {"by_kind": {}, "deadlock": 0, "timeout": 0, "other": 0, "total": 0}
        for kind, per in seen.items():
            v = per[c]
            s["by_kind"][kind] = v["calls"]
            s["deadlock"] += v["deadlock"]
            s["timeout"] += v["timeout"]
            s["other"] += v["calls"] - v["deadlock"] - v["timeout"]
            s["total"] += v["calls"]
        visible[c] = s
    return {"made": made, "visible": visible,
            "not_visible": {c: made[c]["total"] - visible[c]["total"] for c in cpus},
            "blind_spot": BLIND_SPOT + _measured(made, visible)}


def _measured(made, visible):
    """What this run showed of the 6.19 change: a queued-path AA seen or not."""
    q = sum(m["by_kind"].get("aa-queued", 0) for m in made.values())
    v = sum(s["by_kind"].get("aa-queued", 0) for s in visible.values())
    if not q:
        return ""
    if v == 0:
        return (f"; here none of {q} queued-path AA aborts reached it: this kernel "
                "checks AA before queueing")
    return f"; here {v} of {q} queued-path AA aborts reached it: no pre-queue AA check"


def _loop(fd, repeat=None):
    import time

    def work(deadline):
        while time.monotonic() < deadline:
            ret, retval = prog_test_run(fd, data=PKT, repeat=repeat or REPEAT)
            if ret < 0 or retval:
                raise RunFailed(f"test run failed: ret={ret} retval={retval}")
    return work


class Rqspinlock(Case):
    name = "rqspinlock"
    summary = "bpf_res_spin_lock AA / ABBA -EDEADLK and -ETIMEDOUT, incl. a queued-path AA"
    applies = "6.15+ (bpf_res_spin_lock kfuncs)"
    needs = ("func", "bpf_res_spin_lock", "it needs 6.15+")

    def run(self, duration, cpus, kinds=KINDS, timeouts=1):
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise BadArgument(f"unknown rqspinlock kinds {sorted(unknown)}; known: {KINDS}")
        cpus = list(cpus)
        r = CaseResult(self.name, cpus=cpus, duration=duration,
                       params={"kinds": list(kinds), "timeouts": timeouts})
        share = duration / max(1, len([k for k in kinds if k != "timeout"]))
        skipped = {k: "needs two CPUs" for k in kinds
                   if k in ("abba", "aa-queued") and len(cpus) < 2}
        ran = [k for k in kinds if k not in skipped]
        with load("rqspin") as obj:
            fds = {p: obj.prog_fd(p) for p in ("aa", "ab", "ba", "timeout", "aa_queued")}
            obj.attach("on_end")
            _provoke(fds, ran, cpus, share, timeouts)
            obj.detach()
            r.groups, lonely, seen = _read(obj.map_fd("stats"), ran, cpus)
            r.extra["lock_addrs"] = self._addrs(obj)
        _sum_up(r, seen, lonely, skipped)
        r.verdict = self.verdict(r)
        return r

    # each provoked kind's EDEADLK as lstrace names it (ETIMEDOUT: "timeout");
    # the setup locks fail only when a vCPU stalls, of a kind nobody knows
    LSTRACE_KIND = {"aa": "AA", "abba": "ABBA", "aa-queued": "AA", "timeout": "AA",
                    "setup": "unknown"}

    def made_rq(self, r):
        out = {}
        for group, per in r.groups.items():
            _, kind, *setup = group.split(":")
            for cpu, v in per.items():
                for err, n in (("EDEADLK", v["deadlock"]), ("ETIMEDOUT", v["timeout"])):
                    k = "timeout" if err == "ETIMEDOUT" else \
                        self.LSTRACE_KIND["setup" if setup else kind]
                    if n:
                        key = (cpu, err, k, "res_spin_lock")
                        out[key] = out.get(key, 0) + n
        return out

    @staticmethod
    def _addrs(obj):
        import struct
        # struct shared in rqspin.bpf.c: u32 waiters, u32 sink, u64 addr[4], ...
        ret, raw = map_lookup_elem(obj.map_fd("shared"), struct.pack("<I", 0), 56)
        shared_, a, b, base = struct.unpack_from("<4Q", raw, 8) if ret == 0 else (0,) * 4
        # base: lock of key 0; the workload's locks are base .. base + 256 * 8
        return {"shared": shared_, "A": a, "B": b, "base": base, "size": 256 * 8}

    @staticmethod
    def verdict(r):
        parts = []
        for g, per in r.groups.items():
            if g.endswith(":setup"):
                continue
            kind = g.split(":", 1)[1]
            t = stats.total(per)
            by_cpu = ", ".join(f"CPU {c}: {v['deadlock']}+{v['timeout']}" for c, v in per.items())
            parts.append(f"{kind}: {t['deadlock']} -EDEADLK, {t['timeout']} -ETIMEDOUT "
                         f"of {t['calls']} ({by_cpu})")
        vis = sum(r.visible.values())
        made = sum(m["total"] for m in r.failures["made"].values())
        return ("bpf_res_spin_lock failed as provoked: " + "; ".join(parts) +
                f"; {vis} of {made} failures reached lock:contention_end")


def _provoke(fds, kinds, cpus, share, timeouts):
    """Each kind's workload on `cpus`: `share` seconds each; timeout: `timeouts`
    runs per CPU, one CPU at a time (250 ms each, same locks)."""
    for kind in kinds:
        if kind == "aa":
            on_cpus(lambda c: _loop(fds["aa"]), cpus, share)
        elif kind == "abba":
            on_cpus(lambda c: _loop(fds["ab" if cpus.index(c) % 2 == 0 else "ba"]),
                    cpus, share)
        elif kind == "aa-queued":
            on_cpus(lambda c: _loop(fds["aa_queued"]), cpus, share)
        else:
            for cpu in cpus:
                with pinned(cpu):
                    for _ in range(timeouts):
                        ret, retval = prog_test_run(fds["timeout"], data=PKT, repeat=1)
                        if ret < 0 or retval:
                            raise RunFailed(f"timeout run failed: {ret} {retval}")


def _read(stats_fd, kinds, cpus):
    """(groups: each kind's provoking call and setup locks, lonely: the
    aa-queued holder's retakes without a spinner, seen: on_end's per kind)."""
    names = {}
    for kind in kinds:
        setup, fail = GROUPS[kind]
        names[f"bpf_res_spin_lock:{kind}"] = fail
        names[f"bpf_res_spin_lock:{kind}:setup"] = setup
    groups = stats.read_groups(stats_fd, names, cpus)
    lonely = stats.read_groups(stats_fd, {"l": G_LONELY}, cpus)["l"]
    seen = stats.read_groups(stats_fd, {k: SEEN[k] for k in kinds}, cpus)
    return groups, lonely, seen


def _sum_up(r, seen, lonely, skipped):
    """Totals, what contention_end saw and the verdict's inputs into r."""
    cpus = r.cpus
    r.sum_groups()
    r.visible = {c: sum(per[c]["calls"] for per in seen.values()) for c in cpus}
    r.extra["visible_by_kind"] = {k: {c: v["calls"] for c, v in per.items()}
                                  for k, per in seen.items()}
    r.failures = failures(r.groups, seen, cpus)
    r.extra["aa_queued_lonely"] = {c: lonely[c]["calls"] for c in cpus}
    r.extra["skipped"] = skipped
    r.functions = ["bpf_res_spin_lock", "bpf_res_spin_lock_irqsave",
                   "resilient_queued_spin_lock_slowpath",
                   "lock:contention_begin", "lock:contention_end"]
    r.affected = any(c["deadlock"] or c["timeout"] for c in r.per_cpu.values())
