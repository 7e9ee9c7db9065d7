"""The facts the helper family's rqspinlock boundary (bpf/probes/helpers_rq.bpf.c)
reads of the kernel: where a hash map's bucket lock for a key is, and where an
owner's local-storage lock is, as -D defines from BTF."""
from ...layout import map_type_number

# include/linux/jhash.h: JHASH_INITVAL, the hash maps' jhash seed base
JHASH_INITVAL = 0xdeadbeef
# the longest hash-map key whose bucket lock rq_boundary computes (a longer
# one's failures count with kind unknown)
HTAB_KEY_MAX = 64
# kernel/bpf/hashtab.c's layouts the bucket lock address needs, from BTF
_HTAB_MEMBERS = {"HTAB_BUCKETS_OFF": ("bpf_htab", "buckets"),
                 "HTAB_N_BUCKETS_OFF": ("bpf_htab", "n_buckets"),
                 "HTAB_HASHRND_OFF": ("bpf_htab", "hashrnd"),
                 "MAP_KEY_SIZE_OFF": ("bpf_map", "key_size"),
                 "HTAB_BUCKET_LOCK_OFF": ("bucket", "raw_lock")}


def htab_defines(btf):
    """HTAB_*: where a hash map's buckets, their count, its hash seed and a
    bucket's lock are (struct bpf_htab embeds its struct bpf_map first); all 0
    where BTF lacks one (then no bucket lock is computed: kind unknown)."""
    d = {k: (btf.member_offset(*v) if btf else None) for k, v in _HTAB_MEMBERS.items()}
    d["HTAB_BUCKET_SIZE"] = btf.struct_size("bucket") if btf else None
    if None in d.values() or (btf.member_offset("bpf_htab", "map") != 0):
        d = dict.fromkeys(d, 0)
    d.update(HTAB_KEY_MAX=HTAB_KEY_MAX, HTAB_JHASH_INITVAL=f"{JHASH_INITVAL:#x}U")
    return d


# the owners whose local-storage lock rq_boundary finds: map type bucket -> (struct, member)
_STORAGE_OWNERS = {"TASK": ("task_storage", "task_struct", "bpf_storage"),
                   "CGRP": ("cgrp_storage", "cgroup", "bpf_cgrp_storage"),
                   "SK": ("sk_storage", "sock", "sk_bpf_storage")}


def storage_defines(btf):
    """LS_*: where a task's, cgroup's or socket's local storage is, its lock,
    and a storage map's buckets (struct bpf_local_storage_map embeds its struct
    bpf_map first); the lock offset 0 where BTF lacks a layout (kind unknown)."""
    d = {"MAP_TYPE_OFF": btf.member_offset("bpf_map", "map_type") if btf else None,
         "LS_LOCK_OFF": btf.member_offset("bpf_local_storage", "lock") if btf else None,
         "LS_BUCKETS_OFF": btf.member_offset("bpf_local_storage_map", "buckets") if btf else None,
         "LS_BUCKET_LOG_OFF": btf.member_offset("bpf_local_storage_map", "bucket_log")
         if btf else None,
         "LS_BUCKET_SIZE": btf.struct_size("bpf_local_storage_map_bucket") if btf else None}
    if None in d.values():
        d = dict.fromkeys(d, 0)
    for owner, (bucket, struct_name, member) in _STORAGE_OWNERS.items():
        d[f"LS_{owner}_TYPE"] = map_type_number(bucket)
        d[f"LS_{owner}_OFF"] = (btf.member_offset(struct_name, member) if btf else 0) or 0
    return d
