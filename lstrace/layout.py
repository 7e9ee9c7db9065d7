"""The shape of lstrace's per-CPU counters, shared by the BPF C code and Python.

All counters of one CPU live in one `struct counters` value of a single-slot
BPF_PERCPU_ARRAY: one BPF_MAP_LOOKUP_ELEM returns every CPU's counters, and
the BPF side needs no hash map (hash maps take rqspinlocks, the very locks
lstrace watches).  Each probe module (lstrace/probes/) declares its blocks;
the label tables below are shared by its C cases, its decode and its metrics.
Python is the single source of truth for the dimensions: they reach the C
code as -D defines (see `cflags`).
"""
import errno as _errno

OUTCOMES = ("ok", "busy", "deadlock", "timeout", "nomem", "not_found", "unsupported", "other")
FAILURE_REASONS = OUTCOMES[1:]
# the one errno -> outcome table (the C switch is generated from it); any other
# errno is "other".  EOPNOTSUPP: *_storage_delete in NMI, 7.0.y+.
ERRNO_OUTCOMES = {_errno.EBUSY: "busy", _errno.EDEADLK: "deadlock", _errno.ETIMEDOUT: "timeout",
                  _errno.ENOMEM: "nomem", _errno.ENOENT: "not_found",
                  _errno.EOPNOTSUPP: "unsupported"}

# log2 latency slots: slot 0 holds 0..1 ns, slot s holds (2^(s-1), 2^s] ns,
# so a slot's upper bound 2^s is exactly a Prometheus `le`.
NSLOTS = 40

# rqspinlock failures: errno x kind x caller
RQ_ERRNOS = ("EDEADLK", "ETIMEDOUT")
# AA / ABBA: EDEADLK, the failing lock held by this CPU or not (the kernel's
# per-CPU held-locks table); timeout: ETIMEDOUT; unknown: the kernel hid it
RQ_KINDS = ("AA", "ABBA", "unknown", "timeout")


def rq_kind_defines():
    """KIND_AA, KIND_ABBA, ...: the kinds' indices for the C of every probe that
    counts rqspinlock failures (contention_end, the kfunc reports)."""
    return {f"KIND_{k.upper()}": i for i, k in enumerate(RQ_KINDS)}
CALLERS = ("local_storage", "htab", "lru", "ringbuf", "res_spin_lock", "lpm_trie",
           "queue_stack", "freelist", "other")

# bpf() syscall errors: command x map type x errno
BPF_CMDS = {0: "MAP_CREATE", 1: "MAP_LOOKUP_ELEM", 2: "MAP_UPDATE_ELEM", 3: "MAP_DELETE_ELEM",
            4: "MAP_GET_NEXT_KEY", 5: "PROG_LOAD", 10: "PROG_TEST_RUN",
            21: "MAP_LOOKUP_AND_DELETE_ELEM", 24: "MAP_LOOKUP_BATCH",
            25: "MAP_LOOKUP_AND_DELETE_BATCH", 26: "MAP_UPDATE_BATCH", 27: "MAP_DELETE_BATCH",
            28: "LINK_CREATE"}
CMD_NAMES = tuple(BPF_CMDS.values()) + ("other",)
# enum bpf_cmd: the commands lstrace itself issues that the bpf_syscall probe
# counts as "other" (lstrace/bpfsys.py names every command from these two tables)
BPF_OTHER_CMDS = {11: "PROG_GET_NEXT_ID", 13: "PROG_GET_FD_BY_ID", 15: "OBJ_GET_INFO_BY_FD",
                  17: "RAW_TRACEPOINT_OPEN", 32: "ENABLE_STATS"}
MAP_ELEM_CMDS = (1, 2, 3, 4, 21, 24, 25, 26, 27)
# enum bpf_map_type -> bucket; the buckets are the rqspinlock / local-storage users
MAP_TYPE_BUCKETS = ("none", "task_storage", "cgrp_storage", "sk_storage", "inode_storage",
                    "hash", "other_rqspinlock", "other")
_MAP_TYPES = {29: "task_storage", 32: "cgrp_storage", 24: "sk_storage", 28: "inode_storage",
              1: "hash", 5: "hash", 9: "hash", 10: "hash", 13: "hash",
              11: "other_rqspinlock", 22: "other_rqspinlock", 23: "other_rqspinlock",
              27: "other_rqspinlock"}
SYS_ERRNOS = ("EPERM", "ENOENT", "E2BIG", "EBADF", "EAGAIN", "ENOMEM", "EFAULT", "EBUSY",
              "EEXIST", "EINVAL", "ENOSPC", "EDEADLK", "ETIMEDOUT", "EOPNOTSUPP", "other")

# busy-counter sampling (generations A/B)
BUSY_COUNTERS = ("task", "cgrp")


def errno_index(table, err):
    """Index of errno number `err` in a table of names ending in "other"."""
    name = _errno.errorcode.get(err, "other")
    return table.index(name) if name in table else len(table) - 1


def outcome_of_errno(err):
    """Outcome of a helper or kernel function that failed with -err."""
    return ERRNO_OUTCOMES.get(err, "other")


def map_type_bucket(map_type):
    return _MAP_TYPES.get(map_type, "other")


class Layout:
    """Offsets (in u64 words) of each counter block in one CPU's value, and the
    C `struct counters` generated from the same list (c_struct)."""

    def __init__(self, nprobes):
        from . import probes    # imported here: the probe modules import this module's tables
        self.nprobes = nprobes
        # (block, its C dimensions as (define, size) pairs); order = memory order:
        # each probe module's blocks (lstrace/probes/), then the core's
        self.blocks = [b for m in probes.MODULES for b in m.blocks(nprobes)]
        self.blocks.append(("guard_skips", ()))     # the nesting guard's skips (core)
        self.offsets, pos = {}, 0
        for name, dims in self.blocks:
            n = 1
            for _, size in dims:
                n *= size
            self.offsets[name] = (pos, n)
            pos += n
        self.words = pos

    def c_struct(self):
        """`struct counters` for bpf/lstrace.bpf.c, in the blocks' order."""
        fields = "".join(f"\tu64 {name}{''.join(f'[{d}]' for d, _ in dims)};\n"
                         for name, dims in self.blocks)
        return f"struct counters {{\n{fields}}};\n"

    @property
    def value_size(self):
        return self.words * 8

    def cflags(self):
        """-D defines that give the C code the same shape."""
        d = {define: size for _, dims in self.blocks for define, size in dims}
        for i, o in enumerate(OUTCOMES):
            d[f"OUT_{o.upper()}"] = i
        return [f"-D{k}={v}" for k, v in d.items()]

    def block(self, words, name):
        off, n = self.offsets[name]
        return words[off:off + n]


def slot_of(ns):
    """The log2 slot the BPF side puts `ns` in (mirrors log2_slot() in C)."""
    if ns <= 1:
        return 0
    return min((ns - 1).bit_length(), NSLOTS - 1)


def slot_upper_ns(slot):
    """Inclusive upper bound of a slot in ns: 2^slot (slot 0: 1 ns)."""
    return 1 << slot
