"""The helper family's catalogue: one HelperProbe per probed kernel function
(adding one is one line in HELPERS), how each reports failure, and the codes
its generated C passes for the return kind and nesting role."""
from dataclasses import dataclass

# how a function reports failure
RET_PTR_OR_NULL = "ptr_or_null"     # BPF_CALL helper returning a pointer as u64, NULL = failed
RET_ERRNO = "errno"                 # 0 or -errno (helpers return it as u64)
RET_ERR_PTR = "err_ptr"             # pointer or ERR_PTR(-errno)
RET_ERR_PTR_OR_NULL = "err_ptr_or_null"  # pointer, NULL (not found) or ERR_PTR(-errno)
RET_VOID = "void"                   # calls only


@dataclass(frozen=True)
class HelperProbe:
    name: str          # public probe name (metric label, --probes)
    func: str          # kernel function
    ret: str           # RET_* above (the int/void variants are decided from BTF)
    role: str          # "get", "delete", "update" or "" (no nesting role)
    busy_capable: tuple = ()   # generations in which this function can fail on busy
    doc: str = ""
    group: str = ""    # "" = a default probe; else an opt-in group (--probes +GROUP)
    map_type: str = "" # maps group: the map type(s) the function serves (metric label)


HELPERS = (
    HelperProbe("task_storage_get", "bpf_task_storage_get", RET_PTR_OR_NULL, "get", ("A",),
                "bpf_task_storage_get(); gen B/C: the non-recursive variant (LSM, iterators)"),
    HelperProbe("task_storage_get_recur", "bpf_task_storage_get_recur", RET_PTR_OR_NULL,
                "get", ("B",), "bpf_task_storage_get() from tracing programs (gen B)"),
    HelperProbe("task_storage_delete", "bpf_task_storage_delete", RET_ERRNO, "delete", ("A",)),
    HelperProbe("task_storage_delete_recur", "bpf_task_storage_delete_recur", RET_ERRNO,
                "delete", ("B",)),
    HelperProbe("cgrp_storage_get", "bpf_cgrp_storage_get", RET_PTR_OR_NULL, "get", ("B",)),
    HelperProbe("cgrp_storage_delete", "bpf_cgrp_storage_delete", RET_ERRNO, "delete", ("B",)),
    HelperProbe("inode_storage_get", "bpf_inode_storage_get", RET_PTR_OR_NULL, "get"),
    HelperProbe("inode_storage_delete", "bpf_inode_storage_delete", RET_ERRNO, "delete"),
    HelperProbe("sk_storage_get", "bpf_sk_storage_get", RET_PTR_OR_NULL, "get"),
    HelperProbe("sk_storage_delete", "bpf_sk_storage_delete", RET_ERRNO, "delete"),
    HelperProbe("local_storage_update", "bpf_local_storage_update", RET_ERR_PTR, "update",
                doc="creates/updates an element; ERR_PTR(-EDEADLK/-ETIMEDOUT) on gen C"),
    HelperProbe("selem_unlink", "bpf_selem_unlink", RET_ERRNO, "",
                doc="gen C: returns the lock error; void before 7.0 (calls only)"),
    HelperProbe("selem_link_map", "bpf_selem_link_map", RET_ERRNO, "",
                doc="gen C: returns the bucket lock error; void before 7.0"),
    HelperProbe("task_storage_syscall_lookup", "bpf_pid_task_storage_lookup_elem",
                RET_ERR_PTR_OR_NULL, "", doc="bpf(BPF_MAP_LOOKUP_ELEM) on a pidfd key"),
    HelperProbe("task_storage_syscall_update", "bpf_pid_task_storage_update_elem", RET_ERRNO, ""),
    HelperProbe("task_storage_syscall_delete", "bpf_pid_task_storage_delete_elem", RET_ERRNO, ""),
    HelperProbe("cgrp_storage_syscall_lookup", "bpf_cgrp_storage_lookup_elem",
                RET_ERR_PTR_OR_NULL, ""),
    HelperProbe("cgrp_storage_syscall_update", "bpf_cgrp_storage_update_elem", RET_ERRNO, ""),
    HelperProbe("cgrp_storage_syscall_delete", "bpf_cgrp_storage_delete_elem", RET_ERRNO, ""),
    # opt-in group "maps" (--probes +maps): the hash-map family's update/delete map ops,
    # called directly from BPF programs (the verifier patches the helper call) and from
    # bpf().  Before 6.15 htab_lock_bucket() returns -EBUSY when this CPU holds the
    # map's per-CPU map_locked guard; 6.15+ buckets are rqspinlocks (-EDEADLK /
    # -ETIMEDOUT; LRU lists too from 7.2).  Only functions in BTF are planned.
    HelperProbe("htab_update", "htab_map_update_elem", RET_ERRNO, "", group="maps",
                map_type="hash", doc="hash (and hash-of-maps) update"),
    HelperProbe("htab_delete", "htab_map_delete_elem", RET_ERRNO, "", group="maps",
                map_type="hash", doc="hash and per-CPU hash delete (one function)"),
    HelperProbe("htab_percpu_update", "htab_percpu_map_update_elem", RET_ERRNO, "",
                group="maps", map_type="percpu_hash",
                doc="per-CPU hash update from BPF programs (bpf() calls the inner function)"),
    HelperProbe("htab_lru_update", "htab_lru_map_update_elem", RET_ERRNO, "", group="maps",
                map_type="lru_hash"),
    HelperProbe("htab_lru_delete", "htab_lru_map_delete_elem", RET_ERRNO, "", group="maps",
                map_type="lru_hash", doc="LRU and LRU per-CPU hash delete (one function)"),
    HelperProbe("htab_lru_percpu_update", "htab_lru_percpu_map_update_elem", RET_ERRNO, "",
                group="maps", map_type="lru_percpu_hash",
                doc="LRU per-CPU hash update from BPF programs (bpf() calls the inner function)"),
)


NAMES = tuple(p.name for p in HELPERS)
EVENT_SOURCES = NAMES                # a failed call's event names its probe (index = helper_index)
ORDER = 10                          # first: the counters' memory and the metrics' order
COUNTS = ("helper", "latency")      # Snapshot fields: (probe, cpu) -> {outcome: n}, [slots]
# top's per-CPU row (cpu_counts): (key, header, counts as a failure)
CPU_KEYS = (("calls", "calls/s", False), ("busy", "busy/s", False),
            ("deadlock", "deadlock/s", False), ("timeout", "timeout/s", False),
            ("failures", "fail/s", True))
# opt-in groups: --probes +GROUP adds them to the defaults, GROUP alone names them
GROUPS = {"maps": tuple(p.name for p in HELPERS if p.group == "maps")}
MAP_PROBES = GROUPS["maps"]
# Probes called from inside another probed function: their failures surface
# through the entry point (get, delete, map syscall) that called them, so the
# per-CPU sums (and the rqspinlock counts) leave them out unless no entry point
# is attached.
INNER_PROBES = ("local_storage_update", "selem_unlink", "selem_link_map")


def lock_user(name):
    """The rqspinlock lock user (layout.CALLERS) whose failures probe `name`
    counts at their boundary (bpf/probes/helpers_rq.bpf.c): the hash maps'
    bucket lock for the map probes, local storage for its entry points; None
    for the inner probes (their failures come out through an entry point)."""
    if name in MAP_PROBES:
        return "htab"
    return None if name in INNER_PROBES else "local_storage"


def is_map_probe(name):
    return name in MAP_PROBES


def helper(name):
    for p in HELPERS:
        if p.name == name:
            return p
    raise KeyError(name)


def helper_index(name):
    return NAMES.index(name)


# the C's codes for the return kinds and roles: emitted as RET_KIND_* / ROLE_*
# #defines (glue.c_defines), the helper-family C (bpf/probes/helpers.bpf.c) names them
RET_KIND_CODE = {RET_PTR_OR_NULL: 0, RET_ERRNO: 1, RET_ERR_PTR: 2, RET_ERR_PTR_OR_NULL: 3,
                 RET_VOID: 4}
ROLE_CODE = {"": 0, "get": 1, "delete": 2, "update": 3}
