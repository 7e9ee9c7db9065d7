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
	u32 w[HASH_CHUNKS * 3] = {};
	if (len > HTAB_KEY_MAX)
		return 0;
	bpf_probe_read_kernel(w, len, (void *)key);
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

/* `user`: the lock user whose boundary this probe is (CALLERS index), N_CALLER
 * for none; map/key: a hash-map op's arguments (0 elsewhere). */
static __always_inline void rq_boundary(struct cpu_state *s, struct counters *c, u32 user,
					u32 out, u64 map, u64 key)
{
	if (user >= N_CALLER || (out != OUT_DEADLOCK && out != OUT_TIMEOUT))
		return;
	u32 e = out == OUT_DEADLOCK ? RQ_E_EDEADLK : RQ_E_ETIMEDOUT;
	u64 lock = user == CALLER_HTAB ? bucket_lock(map, key) : 0;
	if (s->rq_end_lock && (lock ? s->rq_end_lock == lock : s->rq_end_user == user)) {
		s->rq_end_lock = 0;           /* counted at lock:contention_end */
		return;
	}
	/* the failing attempt has left this CPU's held locks: skip_top 0 */
	u32 kind = rq_kind(lock, e, 0);
	if (e < N_RQ_ERRNO && kind < N_RQ_KIND)
		__sync_fetch_and_add(&c->rq[e][kind][user], 1);
}
