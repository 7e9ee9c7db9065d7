"""The helper family's generated C: per planned function, an exit program (and
an entry program where needed) declared with the exact argument count and
return type read from BTF, calling the family's shared C; and the attach
points of those programs."""
import dataclasses

from ...cgen import switch_cases
from ...layout import CALLERS, ERRNO_OUTCOMES, MAX_ERRNO
from ..bcc import KFUNC_PREFIXES, kfunc_name
from .boundary import htab_defines, storage_defines
from .catalogue import RET_KIND_CODE, RET_VOID, ROLE_CODE, helper, helper_index, lock_user

# the family's shared C, before the glue: the rqspinlock boundary (rq_boundary),
# then the classification (on_entry, on_exit, count_exit)
C_FRAGMENT = ("helpers_rq.bpf.c", "helpers.bpf.c")


def defines(kernel, plans):
    """The codes the family's C names: return kinds, roles, the errno -> outcome
    switch (layout.ERRNO_OUTCOMES) and MAX_ERRNO."""
    d = {f"RET_KIND_{k.upper()}": c for k, c in RET_KIND_CODE.items()}
    d.update({f"ROLE_{r.upper() or 'NONE'}": c for r, c in ROLE_CODE.items()})
    d["OUTCOME_CASES"] = switch_cases({e: f"OUT_{o.upper()}" for e, o in ERRNO_OUTCOMES.items()})
    d["MAX_ERRNO"] = MAX_ERRNO
    d["CALLER_HTAB"] = CALLERS.index("htab")
    d.update(htab_defines(kernel.btf if kernel else None))
    d.update(storage_defines(kernel.btf if kernel else None))
    return d


def _ret_decl(proto):
    if proto.ret == "void":
        return None
    return "int ret" if proto.ret_size == 4 and not proto.returns_pointer else "long ret"


def _ret_kind(hp, proto):
    return RET_VOID if proto.ret == "void" else hp.ret


def _lookup_busy_var(hp, kernel):
    """The counter whose being held makes a *lookup* (get without F_CREATE)
    fail: only generation A's bpf_task_storage_get returns NULL before
    looking up.  Generation B's _recur and cgroup gets still look up while
    busy (only creating needs the counter), so their NULL lookups are absent."""
    return "BUSY_TASK" if kernel.generation == "A" and hp.name == "task_storage_get" else "0"


def needs_entry(plan, latency):
    """A helper probe runs an entry program only where it needs one: for the
    latency clock, or (kprobe mode) for the arguments a kretprobe cannot see."""
    return latency or (plan.mode == "kprobe" and helper(plan.name).role == "get")


@dataclasses.dataclass
class _Call:
    """What one helper probe's programs pass to the shared C."""
    hp: object
    proto: object
    idx: int
    kind: int
    busy: str
    create_null: str
    flags_arg: object      # argument index of the flags, None: none
    ret_decl: object       # "int ret", "long ret" or None (void)
    clock: int
    entry: bool
    user: int              # the lock user it is a boundary of (CALLERS), len(CALLERS): none


def _fentry_glue(c):
    """fexit classifies from its own arguments and return value (count_exit);
    with an entry program (latency) that only stamps the call."""
    hp, proto = c.hp, c.proto
    args = ", ".join(f"u64 a{i}" for i in range(len(proto.params)))
    exit_args = ", ".join(x for x in (args, c.ret_decl) if x)

    def arg(i):      # the i-th argument, where the prototype has one
        return f"a{i}" if i is not None and i < len(proto.params) else "0"
    # gets: (map, owner, value, flags); deletes: (map, owner); the update: (owner,
    # smap, value, flags); hash-map ops: (map, key, ...), the key passed as the owner
    owner, smap = {"get": (1, 0), "delete": (1, 0), "update": (0, 1)}.get(hp.role,
                                                                          (None, None))
    if hp.group == "maps":
        owner, smap = 1, 0
    owner, smap, value = arg(owner), arg(smap), arg(2 if owner is not None else None)
    rc = "(s64)ret" if c.ret_decl else "0"
    stamp = (f"KFUNC_PROBE({hp.func}, {args})\n"
             f"{{ return stamp_entry(ctx, {c.idx}); }}\n") if c.entry else ""
    return stamp + (f"KRETFUNC_PROBE({hp.func}, {exit_args})\n"
                    f"{{ return count_exit(ctx, {c.idx}, {c.kind}, {rc}, {c.create_null}, "
                    f"{arg(c.flags_arg)}, {owner}, {smap}, {value}, {c.busy}, {c.clock}, "
                    f"{c.user}); }}\n")


def _kprobe_glue(c):
    """kprobe mode: an entry program only for gets (a kretprobe cannot see the
    flags) or the latency clock."""
    hp = c.hp
    flags = f"PT_REGS_PARM{c.flags_arg + 1}(ctx)" if c.flags_arg is not None else "0"
    cast = {"int ret": "(s64)(int)PT_REGS_RC(ctx)", "long ret": "(s64)PT_REGS_RC(ctx)"}.get(
        c.ret_decl, "0")
    text = (f"int lst_kp_{hp.name}(struct pt_regs *ctx)\n"
            f"{{ return on_entry(ctx, {c.idx}, {ROLE_CODE[hp.role]}, {flags}, {c.busy}, "
            f"{c.clock}); }}\n") if c.entry else ""
    return text + (f"int lst_krp_{hp.name}(struct pt_regs *ctx)\n"
                   f"{{ return on_exit(ctx, {c.idx}, {c.kind}, {cast}, {c.create_null}, "
                   f"{int(c.entry)}, {c.clock}, {c.user}); }}\n")


def helper_glue(plan, kernel, create_null_busy, mode, latency=False):
    """C text of the programs of one helper probe in `mode` (fentry or kprobe).

    Counting (the default): fentry mode has one fexit program that classifies
    from its own arguments and return value (count_exit); kprobe mode keeps an
    entry program only for gets, whose kretprobe cannot see the flags, and
    reads no clock.  With `latency`: entry programs with a clock (fentry: one
    that only stamps the call; the fexit classifies as in counting mode)."""
    hp, proto = helper(plan.name), plan.proto
    create_null = "OUT_BUSY" if create_null_busy and kernel.generation in hp.busy_capable \
        else "OUT_OTHER"
    user = lock_user(hp.name)
    c = _Call(hp, proto, helper_index(hp.name), RET_KIND_CODE[_ret_kind(hp, proto)],
              _lookup_busy_var(hp, kernel), create_null,
              3 if hp.role in ("get", "update") else None, _ret_decl(proto), int(latency),
              needs_entry(dataclasses.replace(plan, mode=mode), latency),
              CALLERS.index(user) if user else len(CALLERS))
    return _fentry_glue(c) if mode == "fentry" else _kprobe_glue(c)


def glue(kernel, plans, latency=False, fallback=False):
    """C of every available helper probe in `plans`.  With `fallback`, fentry
    probes get kprobe programs too (BCC loads only what is attached): a probe
    whose fentry attach fails after a good trial can still fall back."""
    # a NULL from get(F_CREATE) is "busy" only if we would have seen the nested update
    create_null_busy = any(p.name == "local_storage_update" and p.available for p in plans)
    return [helper_glue(p, kernel, create_null_busy, mode, latency) for p in plans
            if p.available
            for mode in ((p.mode, "kprobe") if fallback and p.mode == "fentry" else (p.mode,))]


# ---- attach points: what the session attaches and detaches, entry before exit
MISSED_CALLS = True     # the exit program's recursion_misses are calls lstrace missed


def entry_exit_names(plan, compiled):
    """Function names of a helper probe's two programs in the compiled module
    (`compiled`: every function name BCC compiled, in its own spelling)."""
    hp = helper(plan.name)
    if plan.mode == "fentry":
        exit_ = kfunc_name(compiled, KFUNC_PREFIXES[1], hp.func)
        try:
            entry = kfunc_name(compiled, KFUNC_PREFIXES[0], hp.func)
        except LookupError:      # counting mode: no entry program
            entry = None
        return entry, exit_
    entry = f"lst_kp_{hp.name}"
    return (entry if entry in compiled else None), f"lst_krp_{hp.name}"


def attach_points(plan, compiled, latency=False):
    entry, exit_ = entry_exit_names(plan, compiled)
    kinds = ("kfunc", "kretfunc") if plan.mode == "fentry" else ("kprobe", "kretprobe")
    points = [(kinds[0], plan.func, entry)] if needs_entry(plan, latency) else []
    return points + [(kinds[1], plan.func, exit_)]
