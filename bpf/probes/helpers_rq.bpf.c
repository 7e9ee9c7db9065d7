// SPDX-License-Identifier: GPL-2.0
/* lstrace: the helper family's boundary counting of rqspinlock failures
 * (lstrace/probes/helpers/glue.py lists it before helpers.bpf.c, whose exit
 * programs call rq_boundary on their failure path).  Uses the core's rq_kind
 * (bpf/core/rqheld.bpf.c); HTAB_* are struct offsets from BTF. */

/* ---- rqspinlock failures at their lock user's boundary (lstrace/probes/lock_users.py):
 * the hash maps' update/delete ops (the bucket lock; +maps) and the local-storage
 * entry points (gets, deletes, map syscalls) count each failure they return into
 * the rqspinlock counters, once: a failure lock:contention_end already counted
 * (the queued slow path) is skipped.  Failure path only. */

#define ROL32(x, k) (((x) << (k)) | ((x) >> (32 - (k))))
/* include/linux/jhash.h's __jhash_mix and __jhash_final */
#define JHASH_MIX(a, b, c) { \
	a -= c; a ^= ROL32(c, 4); c += b; \
	b -= a; b ^= ROL32(a, 6); a += c; \
	c -= b; c ^= ROL32(b, 8); b += a; \
	a -= c; a ^= ROL32(c, 16); c += b; \
	b -= a; b ^= ROL32(a, 19); a += c; \
	c -= b; c ^= ROL32(b, 4); b += a; }
#define JHASH_FINAL(a, b, c) { \
	c ^= b; c -= ROL32(b, 14); \
	a ^= c; a -= ROL32(c, 11); \
	b ^= a; b -= ROL32(a, 25); \
	c ^= b; c -= ROL32(b, 16); \
	a ^= c; a -= ROL32(c, 4); \
	b ^= a; b -= ROL32(a, 14); \
	c ^= b; c -= ROL32(b, 24); }
#define HASH_CHUNKS (HTAB_KEY_MAX / 12 + 1)

/* htab_map_hash(): jhash2 for a key of whole words, jhash for any other; on a
 * little-endian CPU both equal jhash over the bytes (same seed, same 12-byte
 * rounds, and the byte tail read as zero-padded words). */
static __always_inline u32 key_hash(u64 key, u32 len, u32 seed)
{
	/* 2 x HTAB_KEY_MAX bytes (a power of two, more than HASH_CHUNKS * 12): the
	 * read's length is masked to fit, which every verifier can follow */
	u32 w[HTAB_KEY_MAX / 2] = {};
	if (len > HTAB_KEY_MAX)
		return 0;
	u32 n = len;
	asm volatile("" : "+r"(n));     /* clang knows n <= 64 and would drop the mask */
	bpf_probe_read_kernel(w, n & (sizeof(w) - 1), (void *)key);
	u32 a = HTAB_JHASH_INITVAL + len + seed, b = a, c = a;
#pragma unroll
	for (int i = 0; i < HASH_CHUNKS; i++) {
		if (len > 12) {
			a += w[3 * i]; b += w[3 * i + 1]; c += w[3 * i + 2];
			JHASH_MIX(a, b, c);
			len -= 12;
		} else if (len) {
			a += w[3 * i]; b += w[3 * i + 1]; c += w[3 * i + 2];
			JHASH_FINAL(a, b, c);
			len = 0;
		}
	}
	return c;
}

/* The address of the bucket lock a hash-map op on `key` takes (struct bucket's
 * raw_lock; offsets from BTF); 0 when not known (key longer than HTAB_KEY_MAX). */
static __always_inline u64 bucket_lock(u64 map, u64 key)
{
	u32 key_size = 0, n = 0, seed = 0;
	u64 buckets = 0;
	if (!map || !key || !HTAB_BUCKETS_OFF)
		return 0;
	bpf_probe_read_kernel(&key_size, sizeof(key_size), (void *)(map + MAP_KEY_SIZE_OFF));
	bpf_probe_read_kernel(&n, sizeof(n), (void *)(map + HTAB_N_BUCKETS_OFF));
	bpf_probe_read_kernel(&seed, sizeof(seed), (void *)(map + HTAB_HASHRND_OFF));
	bpf_probe_read_kernel(&buckets, sizeof(buckets), (void *)(map + HTAB_BUCKETS_OFF));
	if (!buckets || !n || !key_size || key_size > HTAB_KEY_MAX)
		return 0;
	u32 i = key_hash(key, key_size, seed) & (n - 1);
	return buckets + (u64)i * HTAB_BUCKET_SIZE + HTAB_BUCKET_LOCK_OFF;
}

/* The owner's local-storage lock (struct bpf_local_storage's lock, reached from
 * the task, cgroup or socket the map type names; LS_* from BTF and
 * layout.map_type_number): the first lock every storage operation takes.  0
 * for other owners (inode) or when BTF lacks a layout. */
static __always_inline u64 storage_lock(u64 map, u64 owner)
{
	u32 type = 0;
	u64 storage = 0, off = 0;
	if (!map || !owner || !LS_LOCK_OFF)
		return 0;
	bpf_probe_read_kernel(&type, sizeof(type), (void *)(map + MAP_TYPE_OFF));
	off = type == LS_TASK_TYPE ? LS_TASK_OFF : type == LS_CGRP_TYPE ? LS_CGRP_OFF :
	      type == LS_SK_TYPE ? LS_SK_OFF : 0;
	if (off)
		bpf_probe_read_kernel(&storage, sizeof(storage), (void *)(owner + off));
	return storage ? storage + LS_LOCK_OFF : 0;
}

/* [*lo, *hi): the bucket locks of local-storage map `map` (0, 0: unreadable). */
static __always_inline void storage_buckets(u64 map, u64 *lo, u64 *hi)
{
	u64 buckets = 0;
	u32 log = 0;
	bpf_probe_read_kernel(&buckets, sizeof(buckets), (void *)(map + LS_BUCKETS_OFF));
	bpf_probe_read_kernel(&log, sizeof(log), (void *)(map + LS_BUCKET_LOG_OFF));
	*lo = *hi = 0;
	if (buckets && log < 32) {
		*lo = buckets;
		*hi = buckets + ((u64)LS_BUCKET_SIZE << log);
	}
}

/* Did lock:contention_end count this failure already (the queued slow path)?
 * Its slot names the lock and the task; a hash map's failure is its bucket
 * lock (the caller there may read lru), a local-storage one the owner's
 * storage lock or one of the map's bucket locks; the lock user where the
 * lock is not known here.  A match is consumed. */
static __always_inline int counted_at_end(struct cpu_state *s, u32 user, u64 lock, u64 lo,
					  u64 hi)
{
	u64 end = s->rq_end_lock;
	if (!end || s->rq_end_tid != (u32)bpf_get_current_pid_tgid())
		return 0;
	int same = lock ? (end == lock || (end >= lo && end < hi)) : s->rq_end_user == user;
	if (same)
		s->rq_end_lock = 0;
	return same;
}

/* `user`: the lock user whose boundary this probe is (CALLERS index), N_CALLER
 * for none; map/owner: a hash-map op's map and key, a storage op's map and
 * owner (0 where the probe has none). */
static __always_inline void rq_boundary(struct cpu_state *s, struct counters *c, u32 user,
					u32 out, u64 map, u64 owner)
{
	if (user >= N_CALLER || (out != OUT_DEADLOCK && out != OUT_TIMEOUT))
		return;
	u32 e = out == OUT_DEADLOCK ? RQ_E_EDEADLK : RQ_E_ETIMEDOUT;
	int htab = user == CALLER_HTAB;
	u64 lock = htab ? bucket_lock(map, owner) : storage_lock(map, owner), lo = 0, hi = 0;
	if (!htab && lock)
		storage_buckets(map, &lo, &hi);
	if (counted_at_end(s, user, lock, lo, hi))
		return;
	/* the failing attempt has left this CPU's held locks: skip_top 0; a storage
	 * deadlock whose storage lock this CPU does not hold may still be an AA
	 * on one of the map's buckets (or unreadable ones) */
	u32 kind = rq_kind(lock, e, 0);
	if (!htab && kind == KIND_ABBA && (!hi || held_by_this_cpu(1, lo, hi, 0) != 0))
		kind = KIND_UNKNOWN;
	if (e < N_RQ_ERRNO && kind < N_RQ_KIND)
		__sync_fetch_and_add(&c->rq[e][kind][user], 1);
}
