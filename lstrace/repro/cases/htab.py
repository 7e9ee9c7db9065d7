"""htab-busy / htab-deadlock: a BPF program nested inside a hash-map update
on the same CPU and bucket (bpf/repro/htab.bpf.c).

Each round on each CPU (threads pinned, all CPUs at once): the tc program
`outer` arms a bpf_timer in this CPU's element, then replaces the element.
For a preallocated hash map the kernel frees the old element's timer while
it holds the bucket lock (htab_map_update_elem -> check_and_free_fields ->
bpf_timer_cancel_and_free), so timer:hrtimer_cancel fires there; the
tp_btf program `nested` on it updates the same key of the same map:
  htab-busy      before 6.15: htab_lock_bucket() finds this CPU's per-CPU
                 map_locked counter held and returns -EBUSY;
  htab-deadlock  6.15+: the bucket lock is an rqspinlock this CPU holds:
                 AA, -EDEADLK (-ETIMEDOUT if detection ever fell back to
                 the timeout).
A tracepoint, no kprobe or fentry: runs wherever tp_btf loads (this host too).
On 7.x (bpf_obj_cancel_fields in BTF) a timer cancelled with IRQs off is
deferred to irq_work and its hrtimer_cancel fires after the unlock, so there
the nesting program is an fentry on bpf_obj_cancel_fields, called under the
lock (the lab guests allow fentry; extra["nested_by_hook"] says which ran).
groups: "htab_map_update_elem:nested" (the call that fails),
"htab_map_update_elem:outer" (the replace it nests in: ok),
"htab_map_update_elem:insert" (the element's insert: the first round's, and
the one after each round that failed to arm) and "bpf_timer:arm" (init +
set_callback + start, one result per round; a round whose timer did not arm
deletes its element and does not nest: the verdict and
extra["last_arm_failure"] say which helper failed, with what).  Measured on
this 6.18 host after a lab run: bpf_timer_init fails with -ENOMEM except when
an earlier round's timer has just been freed (kallsyms has
bpf_map_kmalloc_nolock: the timer's allocation may not take locks, so it
cannot always grow its slab); the armed rounds still nest exactly.
Every replace cancels exactly one armed BPF timer, so nested calls equal
outer calls, per CPU; with kallsyms the nested program acts only on a timer
whose function is bpf_timer_cb.
"""
import errno
import struct
import time

from ...bpfcalls import map_lookup_elem, prog_test_run
from ...plan import htab_lock
from .. import stats
from ..host import has_func, kernel, possible_cpus
from ..result import CaseResult
from .base import Case, NotRunnable, RunFailed, aa_made, load, set_cfg
from .helper_calls import PKT
from .threads import on_cpus

GROUPS = {"htab_map_update_elem:outer": 0, "htab_map_update_elem:nested": 1, "bpf_timer:arm": 2,
          "htab_map_update_elem:insert": 4}
NESTED = "htab_map_update_elem:nested"
OUTER = "htab_map_update_elem:outer"
# nesting programs: hook -> (program, stats group)
HOOKS = {"tp_btf/hrtimer_cancel": ("nested", 1), "fentry/bpf_obj_cancel_fields": ("nested_cancel", 3)}
CANCEL_FIELDS = "bpf_obj_cancel_fields"
REPEAT = 20        # rounds per test-run call: bounds how far a thread overshoots
ERRNO = {"busy": "-EBUSY", "deadlock": "-EDEADLK", "timeout": "-ETIMEDOUT"}


def problems(r, failure_kinds) -> list:
    """What in a run contradicts the design, per CPU (empty when exact):
    calls = the sum of outcomes in every group, every armed round replaced
    (a round whose timer did not arm does not nest: it is reported apart,
    arm_failures()), every replace succeeded and nested exactly one update,
    and each nested update failed with one of failure_kinds.  A replace may
    time out on 6.15+ (another CPU's key shares the bucket and that vCPU
    stalls for 250 ms: a real rqspinlock timeout, counted, no nesting)."""
    bad = []
    for g, per in r.groups.items():
        for c, v in per.items():
            if v["calls"] != sum(n for k, n in v.items() if k != "calls"):
                bad.append(f"{g} CPU {c}: calls != sum of outcomes {v}")
    for c in r.cpus:
        arm, outer = r.groups["bpf_timer:arm"][c], r.groups[OUTER][c]
        nested = r.groups[NESTED][c]
        if not arm["ok"] or outer["calls"] != arm["ok"]:
            bad.append(f"CPU {c}: {arm['calls']} rounds, {arm['ok']} armed, "
                       f"{outer['calls']} replaces")
        if outer["ok"] + outer["timeout"] != outer["calls"]:
            bad.append(f"CPU {c}: the outer replace failed: {outer}")
        if nested["calls"] != outer["ok"]:
            bad.append(f"CPU {c}: {nested['calls']} nested updates for {outer['ok']} replaces")
        if sum(nested[k] for k in failure_kinds) != nested["calls"]:
            bad.append(f"CPU {c}: nested outcomes {nested}, expected only {failure_kinds}")
    return bad


def _per_cpu_s64(obj, name, key, cpus) -> dict:
    """{cpu: value} of a per-CPU s64 array's element, zeros left out."""
    ret, raw = map_lookup_elem(obj.map_fd(name), struct.pack("<I", key), 8 * possible_cpus())
    if ret < 0:
        return {}
    vals = struct.unpack(f"<{possible_cpus()}q", raw)
    return {c: vals[c] for c in cpus if vals[c]}


def _errno_name(ret) -> str:
    return errno.errorcode.get(-ret, str(ret))


def _last_other(obj, cpus) -> dict:
    """{cpu: errno name} of the last nested update counted as "other"."""
    return {c: _errno_name(v) for c, v in _per_cpu_s64(obj, "last_other", 0, cpus).items()}


ARM_STEPS = {1: "bpf_timer_init", 2: "bpf_timer_set_callback", 3: "bpf_timer_start"}


def _last_arm_failure(obj, cpus) -> dict:
    """{cpu: "helper: errno name"} of the last round whose timer did not arm."""
    rets = _per_cpu_s64(obj, "last_arm_fail", 0, cpus)
    steps = _per_cpu_s64(obj, "last_arm_fail", 1, cpus)
    return {c: f"{ARM_STEPS.get(steps.get(c), '?')}: {_errno_name(v)}" for c, v in rets.items()}


def arm_failures(r) -> str:
    """'' or which rounds did not arm their timer (so did not nest), per CPU."""
    fails = {c: v["calls"] - v["ok"] for c, v in r.groups["bpf_timer:arm"].items()}
    last = r.extra.get("last_arm_failure", {})
    return "; ".join(f"CPU {c}: {n} of {r.groups['bpf_timer:arm'][c]['calls']} rounds "
                     f"did not arm their timer (last: {last.get(c, '?')})"
                     for c, n in fails.items() if n)


def _loop(fd):
    def work(deadline):
        while time.monotonic() < deadline:
            ret, retval = prog_test_run(fd, data=PKT, repeat=REPEAT)
            if ret < 0 or retval:
                raise RunFailed(f"htab outer test run failed: ret={ret} retval={retval}")
    return work


class _Htab(Case):
    lock = ""          # the plan.htab_lock() this case needs
    failure = ""       # what the nested update returns then
    kinds = ()         # its outcome categories

    def check(self):
        have = htab_lock(kernel())
        if have == self.lock:
            return None
        if have == "map_locked":
            return "hash-map buckets use the per-CPU map_locked guard here (before 6.15): " \
                   "see htab-busy"
        if have == "rqspinlock":
            return "hash-map buckets are rqspinlocks here (6.15+): see htab-deadlock"
        return "cannot tell the hash-map bucket lock from this kernel's BTF (no struct bpf_htab)"

    def run(self, duration, cpus, fail_every=0):
        """fail_every=N (tests): every Nth round that reaches bpf_timer_start
        gives it invalid flags, so that round does not arm (-EINVAL) and must
        not disturb the next."""
        cpus = list(cpus)
        params = {"repeat": REPEAT, **({"fail_every": fail_every} if fail_every else {})}
        r = CaseResult(self.name, cpus=cpus, duration=duration, params=params)
        sym = kernel().kallsyms.range_of("bpf_timer_cb")
        hooks = list(HOOKS) if has_func(CANCEL_FIELDS) else ["tp_btf/hrtimer_cancel"]
        try:
            obj = load("htab", skip=[HOOKS[h][0] for h in HOOKS if h not in hooks])
        except NotRunnable as e:
            if len(hooks) == 1:
                raise
            raise NotRunnable(f"this kernel defers the timer cancel out of the bucket lock: "
                              f"the nesting needs fentry on {CANCEL_FIELDS}: {e}") from None
        with obj:
            set_cfg(obj, 0, 0, 0, 0, sym[0] if sym else 0, fail_every)
            for h in hooks:
                obj.attach(HOOKS[h][0])
            fd = obj.prog_fd("outer")
            on_cpus(lambda c: _loop(fd), cpus, duration)
            obj.detach()
            groups = {g: i for g, i in GROUPS.items() if g != NESTED}
            groups.update({h: HOOKS[h][1] for h in hooks})
            g = stats.read_groups(obj.map_fd("stats"), groups, cpus)
            r.extra["nested_other_errno"] = _last_other(obj, cpus)
            r.extra["last_arm_failure"] = _last_arm_failure(obj, cpus)
        by_hook = {h: g.pop(h) for h in hooks}
        g[NESTED] = {c: stats.zero() for c in cpus}
        for per in by_hook.values():
            for c in cpus:
                stats.add(g[NESTED][c], per[c])
        r.groups = {k: g[k] for k in GROUPS}
        r.extra["nested_by_hook"] = {h: {c: v["calls"] for c, v in per.items()}
                                     for h, per in by_hook.items()}
        r.extra["filter"] = ("hrtimer function == bpf_timer_cb" if sym else
                             "none (no kallsyms): any hrtimer cancelled in the replace")
        r.extra["bucket_lock"] = self.lock
        r.sum_groups()
        r.functions = ["htab_map_update_elem", "bpf_timer_cancel_and_free",
                       "timer:hrtimer_cancel"] + ([CANCEL_FIELDS] if len(hooks) > 1 else [])
        nested = r.groups[NESTED]
        r.affected = any(c["busy"] or c["deadlock"] or c["timeout"] for c in nested.values())
        r.extra["problems"] = problems(r, self.kinds)
        r.verdict = self.verdict(r)
        return r

    def verdict(self, r):
        nested, t = r.groups[NESTED], stats.total(r.groups[NESTED])
        fails = {k: t[k] for k in ("busy", "deadlock", "timeout") if t[k]}
        by_cpu = ", ".join(f"CPU {c}: {v['calls'] - v['ok']}/{v['calls']}"
                           for c, v in nested.items())
        if not t["calls"]:
            return "the nested program never ran (no hrtimer_cancel inside the replace)"
        what = ", ".join(f"{n} {ERRNO[k]}" for k, n in fails.items()) or "none"
        unexpected = "; UNEXPECTED: " + "; ".join(r.extra["problems"]) \
            if r.extra["problems"] else ""
        unarmed = arm_failures(r)
        unarmed = f" ({unarmed}: not counted above)" if unarmed else ""
        return (f"an update nested in a hash-map update on the same CPU failed "
                f"{t['calls'] - t['ok']} of {t['calls']} times ({what}; {by_cpu}): "
                f"{self.failure}{unarmed}{unexpected}")


class HtabBusy(_Htab):
    name = "htab-busy"
    summary = "hash-map update nested in one on the same CPU: -EBUSY from map_locked"
    applies = "kernels whose hash maps have the per-CPU map_locked guard (before 6.15)"
    lock = "map_locked"
    kinds = ("busy",)
    failure = "htab_lock_bucket() found this CPU's map_locked counter held (spurious -EBUSY)"


class HtabDeadlock(_Htab):
    name = "htab-deadlock"
    summary = "hash-map update nested in one on the same CPU: rqspinlock AA -EDEADLK"
    applies = "kernels whose hash-map buckets are rqspinlocks (6.15+)"
    lock = "rqspinlock"
    kinds = ("deadlock", "timeout")
    failure = "the bucket's rqspinlock detected the AA deadlock (-EDEADLK / -ETIMEDOUT)"

    def made_rq(self, r):
        """The nested calls' failures (AA on the bucket lock by construction)
        and the replaces that timed out (see problems)."""
        out = aa_made(r.groups.get(NESTED, {}), "htab")
        for cpu, v in r.groups.get(OUTER, {}).items():
            if v["timeout"]:
                key = (cpu, "ETIMEDOUT", "timeout", "htab")
                out[key] = out.get(key, 0) + v["timeout"]
        return out
