"""What the rqspinlock probes read of the kernel's rqspinlock itself: the
address ranges of its users (kallsyms: a failure's caller) and the layout of
the per-CPU held-locks table (BTF: AA vs ABBA, the kfunc reports' lock lines).
"""
import os

from ..layout import CALLERS, rq_errno_defines, rq_kind_defines

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


def caller_ranges(kallsyms):
    """Sorted, merged [start, end) ranges of rqspinlock users -> caller index."""
    rows = []
    for i, (addr, name) in enumerate(zip(kallsyms.addrs, kallsyms.names)):
        for cat, prefixes in CALLER_PREFIXES:
            if name.startswith(prefixes):
                end = kallsyms.addrs[i + 1] if i + 1 < len(kallsyms.addrs) else addr + 1
                rows.append([addr, end, CALLERS.index(cat)])
                break
    merged = []
    for r in rows:
        if merged and merged[-1][2] == r[2] and merged[-1][1] == r[0]:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return merged[:N_RANGES]


# struct rqspinlock_held (include/asm-generic/rqspinlock.h): { int cnt;
# void *locks[RES_NR_HELD]; }, read from BTF; this layout only where BTF lacks it
HELD_DEFAULT = {"cnt": 0, "locks": 8, "size": 256}


def held_defines(btf):
    """RQ_HELD_CNT_OFF, RQ_HELD_LOCKS_OFF and RQ_NR_HELD (RES_NR_HELD) for the C
    that reads this CPU's rqspinlock_held_locks."""
    cnt = btf.member_offset("rqspinlock_held", "cnt")
    locks = btf.member_offset("rqspinlock_held", "locks")
    size = btf.struct_size("rqspinlock_held")
    if cnt is None or locks is None or not size:
        cnt, locks, size = HELD_DEFAULT["cnt"], HELD_DEFAULT["locks"], HELD_DEFAULT["size"]
    return {"RQ_HELD_CNT_OFF": cnt, "RQ_HELD_LOCKS_OFF": locks,
            "RQ_NR_HELD": (size - locks) // 8}


# include/linux/preempt.h: PREEMPT 8 bits, SOFTIRQ 8, HARDIRQ 4, then NMI 4
NMI_MASK = 0xf << 20
# A test's forced path (tests/guest/test_rq_boundaries.py): NMI_MASK replaced
# by bits every failure's context has set (preemption is off on the lock
# path), so the nmi classification runs where the lab cannot make NMIs (TCG
# has no hardware perf events).  Never set in production.
NMI_MASK_ENV = "LSTRACE_TEST_NMI_MASK"


def preempt_count_source(kernel):
    """(PREEMPT_COUNT_VAR, TASK_PREEMPT_OFF): where this CPU's preempt_count
    is: x86's per-CPU __preempt_count (kallsyms data symbol), or the offset of
    preempt_count in current (arm64: task_struct.thread_info); (0, 0) unknown."""
    var = kernel.percpu_var_addr("__preempt_count")
    if var:
        return var, 0
    ti = kernel.btf.member_offset("task_struct", "thread_info")
    pc = kernel.btf.member_offset("thread_info", "preempt_count")
    return 0, (ti + pc if ti is not None and pc is not None else 0)


def kind_defines(kernel):
    """The core's rqheld.bpf.c: the held-locks table (address, layout), where
    preempt_count is and its NMI bits, the kinds' and errnos' indices."""
    held = kernel.percpu_var_addr("rqspinlock_held_locks")
    var, task_off = preempt_count_source(kernel)
    d = {"HELD_LOCKS": f"{held:#x}ULL" if held else 0,
         "PREEMPT_COUNT_VAR": f"{var:#x}ULL" if var else 0, "TASK_PREEMPT_OFF": task_off,
         "NMI_MASK": os.environ.get(NMI_MASK_ENV) or f"{NMI_MASK:#x}"}
    d.update(held_defines(kernel.btf))
    d.update(rq_kind_defines())
    d.update(rq_errno_defines())
    return d


def nmi_note(kernel):
    """How a failure's kind becomes nmi on this kernel, or why it cannot."""
    var, task_off = preempt_count_source(kernel)
    if var or task_off:
        where = "__preempt_count (kallsyms)" if var else "current->thread_info (BTF)"
        return f"nmi: a failure whose context has preempt_count's NMI bits set ({where})"
    return ("nmi: undetectable here (no __preempt_count data symbol in kallsyms, no "
            "preempt_count in thread_info): NMI-context failures count as their errno's kind")
