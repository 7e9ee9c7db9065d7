"""The shape of lstrace's per-CPU counters, shared by the BPF C code and Python.

A leaf: vocabularies only (outcomes, errnos, kinds, callers, bpf() commands,
map types, histogram slots), imported by the probe modules and the core.  The
per-CPU counter layout made from the probes' blocks is lstrace/counters.py.
Python is the single source of truth: the C gets these as -D defines.
"""
import errno as _errno

OUTCOMES = ("ok", "busy", "deadlock", "timeout", "nomem", "not_found", "unsupported", "other")
FAILURE_REASONS = OUTCOMES[1:]
# the one errno -> outcome table (the C switch is generated from it); any other
# errno is "other".  EOPNOTSUPP: *_storage_delete in NMI, 7.0.y+.
ERRNO_OUTCOMES = {_errno.EBUSY: "busy", _errno.EDEADLK: "deadlock", _errno.ETIMEDOUT: "timeout",
                  _errno.ENOMEM: "nomem", _errno.ENOENT: "not_found",
                  _errno.EOPNOTSUPP: "unsupported"}

# the largest errno an ERR_PTR / a -errno return holds (include/linux/err.h)
MAX_ERRNO = 4095

# log2 latency slots: slot 0 holds 0..1 ns, slot s holds (2^(s-1), 2^s] ns,
# so a slot's upper bound 2^s is exactly a Prometheus `le`.
NSLOTS = 40

# rqspinlock failures: errno x kind x caller
RQ_ERRNOS = ("EDEADLK", "ETIMEDOUT")
# AA / ABBA: EDEADLK, the failing lock held by this CPU or not (the kernel's
# per-CPU held-locks table); timeout: ETIMEDOUT; nmi: either, in NMI context
# (7.x: an NMI meeting a queued waiter of its CPU fails at once, 30dc2f7025fe);
# unknown: the kernel hid it
RQ_KINDS = ("AA", "ABBA", "unknown", "timeout", "nmi")


def rq_errno_defines():
    """The C of every probe that counts rqspinlock failures: RQ_E_EDEADLK, ...
    (each errno's index in RQ_ERRNOS), RQ_ERRNO_INDEX(r) (the index of a return
    value -errno, N_RQ_ERRNO for any other) and RQ_OUTCOME(e) (its outcome)."""
    d = {f"RQ_E_{n}": i for i, n in enumerate(RQ_ERRNOS)}
    index = "".join(f"(r) == -{getattr(_errno, n)} ? {i} : " for i, n in enumerate(RQ_ERRNOS))
    d["RQ_ERRNO_INDEX(r)"] = f"({index}{len(RQ_ERRNOS)})"
    outcome = "".join(f"(e) == {i} ? OUT_{ERRNO_OUTCOMES[getattr(_errno, n)].upper()} : "
                      for i, n in enumerate(RQ_ERRNOS))
    d["RQ_OUTCOME(e)"] = f"({outcome}OUT_OTHER)"
    return d


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
MAP_ELEM_CMDS = tuple(c for c, n in BPF_CMDS.items()
                      if n.startswith("MAP_") and n != "MAP_CREATE")
# enum bpf_cmd: the commands lstrace itself issues that the bpf_syscall probe
# counts as "other" (lstrace/bpfsys.py names every command from these two tables)
BPF_OTHER_CMDS = {11: "PROG_GET_NEXT_ID", 13: "PROG_GET_FD_BY_ID", 15: "OBJ_GET_INFO_BY_FD",
                  17: "RAW_TRACEPOINT_OPEN", 32: "ENABLE_STATS"}
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


def map_type_number(bucket):
    """The enum bpf_map_type of a local-storage bucket (task_storage, ...)."""
    return next(n for n, b in _MAP_TYPES.items() if b == bucket)


def slot_of(ns):
    """The log2 slot the BPF side puts `ns` in (mirrors log2_slot() in C)."""
    if ns <= 1:
        return 0
    return min((ns - 1).bit_length(), NSLOTS - 1)


def slot_upper_ns(slot):
    """Inclusive upper bound of a slot in ns: 2^slot (slot 0: 1 ns)."""
    return 1 << slot
