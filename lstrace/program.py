"""Generate lstrace's BPF program for the running kernel from a plan.

bpf/lstrace.bpf.c holds the logic; this module appends one entry and one
exit program per planned helper probe, declared with the exact argument
count and return type read from BTF (an fexit program must match the
prototype: bpf_local_storage_update has had 4, 5 and 6 arguments), and
computes the -D defines: dimensions, kernel struct offsets from BTF,
addresses from kallsyms.
"""
import dataclasses
import errno
import os
import sys
from pathlib import Path

from . import decode, layout, probes
from .probes import RET_ERR_PTR, RET_ERR_PTR_OR_NULL, RET_ERRNO, RET_PTR_OR_NULL, RET_VOID

RET_KIND_CODE = {RET_PTR_OR_NULL: 0, RET_ERRNO: 1, RET_ERR_PTR: 2, RET_ERR_PTR_OR_NULL: 3,
                 RET_VOID: 4}
ROLE_CODE = {"": 0, "get": 1, "delete": 2, "update": 3}
N_RANGES = 1024          # a power of two: caller_of() is a uniform binary search

# symbol-name prefixes of the kernel's rqspinlock users, most specific first
CALLER_PREFIXES = (
    ("res_spin_lock", ("bpf_res_spin_",)),
    ("local_storage", ("bpf_local_storage", "bpf_selem_", "__bpf_selem", "bpf_task_storage",
                       "bpf_cgrp_storage", "bpf_sk_storage", "bpf_inode_storage",
                       "task_storage_", "cgroup_storage_", "bpf_pid_task_storage",
                       "sk_storage_", "inode_storage_", "__bpf_local_storage")),
    ("lru", ("bpf_lru_", "htab_lru_", "__bpf_lru", "prealloc_lru_pop", "__htab_lru")),
    ("htab", ("htab_", "__htab_", "alloc_htab_elem", "free_htab_elem", "pcpu_init_value",
              "check_and_free_fields")),
    ("ringbuf", ("__bpf_ringbuf", "bpf_ringbuf_", "ringbuf_")),
    ("lpm_trie", ("trie_", "lpm_trie_")),
    ("queue_stack", ("queue_stack_map", "__queue_map_get", "__stack_map_get", "queue_map_",
                     "stack_map_")),
    ("freelist", ("pcpu_freelist", "__pcpu_freelist", "___pcpu_freelist")),
)


def source_dir():
    """bpf/ beside the package (checkout, editable install) or installed data."""
    for d in (Path(__file__).resolve().parent.parent / "bpf",
              Path(sys.prefix) / "share" / "lstrace" / "bpf"):
        if (d / "lstrace.bpf.c").exists():
            return d
    raise FileNotFoundError("bpf/lstrace.bpf.c not found")


def helper_index(name):
    return [p.name for p in probes.HELPERS].index(name)


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


def helper_glue(plan, kernel, create_null_busy, mode, latency=False):
    """C text of the programs of one helper probe in `mode` (fentry or kprobe).

    Counting (the default): fentry mode has one fexit program that classifies
    from its own arguments and return value (count_exit); kprobe mode keeps an
    entry program only for gets, whose kretprobe cannot see the flags, and
    reads no clock.  With `latency`: entry and exit programs with a clock."""
    hp = probes.helper(plan.name)
    proto = plan.proto
    idx, role = helper_index(hp.name), ROLE_CODE[hp.role]
    kind = RET_KIND_CODE[_ret_kind(hp, proto)]
    busy = _lookup_busy_var(hp, kernel)
    create_null = "OUT_BUSY" if create_null_busy and kernel.generation in hp.busy_capable \
        else "OUT_OTHER"
    flags_arg = 3 if hp.role in ("get", "update") else None
    ret_decl = _ret_decl(proto)
    rc = "(s64)ret" if ret_decl else "0"
    clock = int(latency)
    entry = needs_entry(dataclasses.replace(plan, mode=mode), latency)
    if mode == "fentry":
        args = ", ".join(f"u64 a{i}" for i in range(len(proto.params)))
        exit_args = ", ".join(x for x in (args, ret_decl) if x)
        def arg(i):      # the i-th argument, where the prototype has one
            return f"a{i}" if i is not None and i < len(proto.params) else "0"
        flags = arg(flags_arg)
        if not entry:
            # gets: (map, owner, value, flags); the update: (owner, smap, value, flags)
            owner, smap = {"get": (1, 0), "update": (0, 1)}.get(hp.role, (None, None))
            owner, smap, value = arg(owner), arg(smap), arg(2 if owner is not None else None)
            return (f"KRETFUNC_PROBE({hp.func}, {exit_args})\n"
                    f"{{ return count_exit(ctx, {idx}, {kind}, {rc}, {create_null}, {flags}, "
                    f"{owner}, {smap}, {value}, {busy}); }}\n")
        return (f"KFUNC_PROBE({hp.func}, {args})\n"
                f"{{ return on_entry(ctx, {idx}, {role}, {flags}, {busy}, {clock}, 1); }}\n"
                f"KRETFUNC_PROBE({hp.func}, {exit_args})\n"
                f"{{ return on_exit(ctx, {idx}, {kind}, {rc}, {create_null}, {flags}, 1, "
                f"{clock}, 1); }}\n")
    flags = f"PT_REGS_PARM{flags_arg + 1}(ctx)" if flags_arg is not None else "0"
    cast = {"int ret": "(s64)(int)PT_REGS_RC(ctx)", "long ret": "(s64)PT_REGS_RC(ctx)"}.get(
        ret_decl, "0")
    text = (f"int lst_kp_{hp.name}(struct pt_regs *ctx)\n"
            f"{{ return on_entry(ctx, {idx}, {role}, {flags}, {busy}, {clock}, 0); }}\n") \
        if entry else ""
    return text + (f"int lst_krp_{hp.name}(struct pt_regs *ctx)\n"
                   f"{{ return on_exit(ctx, {idx}, {kind}, {cast}, {create_null}, FLAGS_UNKNOWN, "
                   f"{int(entry)}, {clock}, 0); }}\n")


KFUNC_PREFIXES = ("kfunc__", "kretfunc__")


def _kfunc_name(compiled, prefix, func):
    """The name BCC gave KFUNC_PROBE(func) / KRETFUNC_PROBE(func): kfunc__<func> up to
    BCC 0.30, kfunc__vmlinux__<func> from 0.31 on (its helpers.h: kfunc__<module>__<func>)."""
    for name in compiled:
        rest = name[len(prefix):] if name.startswith(prefix) else None
        if rest == func or (rest and rest.endswith("__" + func)
                            and "__" not in rest[:-len(func) - 2]):
            return name
    raise LookupError(f"BCC compiled no {prefix}...{func} program (functions: "
                      f"{', '.join(n for n in compiled if n.startswith(KFUNC_PREFIXES))})")


def entry_exit_names(plan, compiled):
    """Function names of a helper probe's two programs in the compiled module
    (`compiled`: every function name BCC compiled, in its own spelling)."""
    hp = probes.helper(plan.name)
    if plan.mode == "fentry":
        exit_ = _kfunc_name(compiled, KFUNC_PREFIXES[1], hp.func)
        try:
            entry = _kfunc_name(compiled, KFUNC_PREFIXES[0], hp.func)
        except LookupError:      # counting mode: no entry program
            entry = None
        return entry, exit_
    entry = f"lst_kp_{hp.name}"
    return (entry if entry in compiled else None), f"lst_krp_{hp.name}"


def needs_entry(plan, latency):
    """A helper probe runs an entry program only where it needs one: for the
    latency clock, or (kprobe mode) for the arguments a kretprobe cannot see."""
    return latency or (plan.mode == "kprobe" and probes.helper(plan.name).role == "get")


def attach_points(plan, compiled, latency=False):
    """[(kind, event, function)] of one planned probe: what is attached and
    detached, in this order (entry before exit)."""
    if plan.kind == "tracepoint":
        if plan.mode == "fentry":       # bpf_syscall: fexit on the syscall wrapper
            return [("kretfunc", plan.func, _kfunc_name(compiled, KFUNC_PREFIXES[1], plan.func))]
        return list(probes.tracepoint(plan.name).programs)
    entry, exit_ = entry_exit_names(plan, compiled)
    kinds = ("kfunc", "kretfunc") if plan.mode == "fentry" else ("kprobe", "kretprobe")
    points = [(kinds[0], plan.func, entry)] if needs_entry(plan, latency) else []
    return points + [(kinds[1], plan.func, exit_)]


def roles(plans, compiled, latency=False):
    """{program function: (probe, "entry" | "exit")} of the attached probes: an exit
    program's recursion_misses are calls the kernel did not let lstrace see."""
    out = {}
    for p in plans:
        if not p.available:
            continue
        points = attach_points(p, compiled, latency)
        for i, (_kind, _event, fn) in enumerate(points):
            role = "exit" if i == len(points) - 1 else "entry"
            if p.name in ("bpf_syscall",) or p.kind == "helper":
                out[fn] = (p.name, role)
    return out


def caller_ranges(kallsyms):
    """Sorted, merged [start, end) ranges of rqspinlock users -> caller index."""
    rows = []
    for i, (addr, name) in enumerate(zip(kallsyms.addrs, kallsyms.names)):
        for cat, prefixes in CALLER_PREFIXES:
            if name.startswith(prefixes):
                end = kallsyms.addrs[i + 1] if i + 1 < len(kallsyms.addrs) else addr + 1
                rows.append([addr, end, layout.CALLERS.index(cat)])
                break
    merged = []
    for r in rows:
        if merged and merged[-1][2] == r[2] and merged[-1][1] == r[0]:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return merged[:N_RANGES]


def _cases(mapping):
    return " ".join(f"case {k}: return {v};" for k, v in mapping.items())


def defines(kernel, plans, latency=False):
    btf = kernel.btf
    names = {p.name for p in plans if p.available}
    d = {"N_RANGES": N_RANGES,
         "N_EVENTS": decode.N_EVENTS, "STACK_DEPTH": decode.STACK_DEPTH,
         "WITH_RQSPINLOCK": int("rqspinlock" in names),
         "WITH_BPF_SYSCALL": int("bpf_syscall" in names),
         "WITH_BUSY_SAMPLER": int("busy_sampler" in names),
         "WITH_LATENCY": int(latency)}
    d["PCPU_OFFSETS"] = f"{kernel.percpu_offsets_addr:#x}ULL"
    for define, var in (("BUSY_TASK", "bpf_task_storage_busy"),
                        ("BUSY_CGRP", "bpf_cgrp_storage_busy"),
                        ("HELD_LOCKS", "rqspinlock_held_locks")):
        a = kernel.percpu_var_addr(var)
        d[define] = f"{a:#x}ULL" if a else 0
    rq = kernel.kallsyms.range_of("resilient_queued_spin_lock_slowpath") or (0, 0)
    d["RQ_SLOWPATH_START"], d["RQ_SLOWPATH_END"] = f"{rq[0]:#x}ULL", f"{rq[1]:#x}ULL"
    for define, (struct, member) in {
            "OFF_TASK_FILES": ("task_struct", "files"), "OFF_FILES_FDT": ("files_struct", "fdt"),
            "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"), "OFF_FDT_FD": ("fdtable", "fd"),
            "OFF_FILE_PRIVATE": ("file", "private_data"),
            "OFF_MAP_TYPE": ("bpf_map", "map_type")}.items():
        off = btf.member_offset(struct, member)
        d[define] = off if off is not None else 0
    d.update(syscall_defines(kernel, next((p for p in plans if p.name == "bpf_syscall"), None)))
    cmd_idx = {c: i for i, c in enumerate(layout.BPF_CMDS)}
    d["CMD_CASES"] = _cases(cmd_idx)
    err_idx = {getattr(errno, n): i for i, n in enumerate(layout.SYS_ERRNOS) if n != "other"}
    d["SYSERR_CASES"] = _cases(err_idx)
    d["OUTCOME_CASES"] = _cases({e: f"OUT_{o.upper()}" for e, o in layout.ERRNO_OUTCOMES.items()})
    mt_idx = {t: layout.MAP_TYPE_BUCKETS.index(layout.map_type_bucket(t)) for t in range(64)}
    d["MAPTYPE_CASES"] = _cases(mt_idx)
    d["IS_MAP_ELEM_CMD(c)"] = "(" + " || ".join(f"(c) == {c}" for c in layout.MAP_ELEM_CMDS) + ")"
    return d


def syscall_glue(plan):
    """bpf_syscall in fentry mode: the fexit on the syscall wrapper (trampolines
    are not skipped while another task's bpf() holds bpf_prog_active)."""
    if not (plan and plan.available and plan.mode == "fentry"):
        return ""
    return (f"KRETFUNC_PROBE({plan.func}, u64 regs, long ret)\n"
            f"{{ return ret >= 0 ? 0 : count_sys_error(regs, ret); }}\n")


def syscall_defines(kernel, plan):
    """Where bpf_syscall reads bpf()'s arguments: pt_regs offsets from BTF."""
    arch = probes.SYSCALL_ARCH.get(os.uname().machine)
    d = {"BPF_SYSCALL_FEXIT": int(bool(plan and plan.mode == "fentry")),
         "NR_BPF": arch["NR"] if arch else -1}
    for define, member in (("OFF_REGS_ARG0", "arg0"), ("OFF_REGS_ARG1", "arg1"),
                           ("OFF_REGS_NR", "nr")):
        m = arch[member] if arch else None
        name, extra = m if isinstance(m, tuple) else (m, 0)
        off = kernel.btf.member_offset("pt_regs", name) if name else None
        d[define] = off + extra if off is not None else 0
    return d


def build(kernel, plans, fallback=False, latency=False):
    """(C text, cflags, layout) for the planned probes.  With `fallback`, fentry
    probes get kprobe programs too (BCC loads only what is attached): a probe
    whose fentry attach fails after a good trial can still fall back."""
    lay = layout.Layout(len(probes.HELPERS))
    generated = (lay.c_struct() + decode.c_structs()
                 + "".join(f"#define ROLE_{r.upper() or 'NONE'} {c}\n" for r, c in ROLE_CODE.items()))
    text = (source_dir() / "lstrace.bpf.c").read_text().replace("/* @GENERATED@ */\n", generated, 1)
    avail = {p.name for p in plans if p.available}
    # a NULL from get(F_CREATE) is "busy" only if we would have seen the nested update
    create_null_busy = "local_storage_update" in avail
    glue = [helper_glue(p, kernel, create_null_busy, mode, latency) for p in plans
            if p.kind == "helper" and p.available
            for mode in ((p.mode, "kprobe") if fallback and p.mode == "fentry" else (p.mode,))]
    glue.append(syscall_glue(next((p for p in plans if p.name == "bpf_syscall"), None)))
    text += "\n/* ---- generated probe glue */\n" + "\n".join(glue)
    # macros with spaces (switch cases) go into the text, the rest are -D flags
    d = defines(kernel, plans, latency)
    head = "".join(f"#define {k} {v}\n" for k, v in d.items() if " " in str(v))
    flags = ["-Wno-pass-failed"] + lay.cflags() + [f"-D{k}={v}" for k, v in d.items() if " " not in str(v)]
    return head + text, flags, lay
