// SPDX-License-Identifier: GPL-2.0
/* rqspinlock: tc programs, run with BPF_PROG_TEST_RUN on pinned threads,
 * that make bpf_res_spin_lock fail on purpose and count every return.
 *
 *   aa         lock a per-CPU lock twice: -EDEADLK on the pending-bit path,
 *              which fires no lock:contention_* tracepoint.
 *   ab / ba    two CPUs take A then B / B then A, each waiting (bounded)
 *              until the other holds its first lock: ABBA -EDEADLK (the
 *              pending path too when only two CPUs contend).
 *   timeout    hold 34 locks (the held-lock table has 31 slots), then retake
 *              one: AA goes unseen, -ETIMEDOUT after 250 ms (pending path).
 *   aa_queued  every CPU runs it on one shared lock: the holder waits until
 *              another CPU is spinning on the lock, so the pending bit is
 *              taken, and only then retakes it: that -EDEADLK goes through
 *              the queued slow path and ends in contention_end(ret=-35).
 *
 * No helper may be called while a bpf_res_spin_lock is held, so counters
 * and map values are looked up first and only stored to under the lock. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"

extern int bpf_res_spin_lock(struct bpf_res_spin_lock *lock) __ksym;
extern void bpf_res_spin_unlock(struct bpf_res_spin_lock *lock) __ksym;
extern int bpf_res_spin_lock_irqsave(struct bpf_res_spin_lock *lock,
				     unsigned long *flags__irq_flag) __ksym;
extern void bpf_res_spin_unlock_irqrestore(struct bpf_res_spin_lock *lock,
					   unsigned long *flags__irq_flag) __ksym;

/* stats groups: "setup" locks vs the call meant to fail, per kind; then what
 * our own raw_tp on contention_end saw fail (ret < 0) on our locks, per kind */
enum { G_AA_SETUP, G_AA, G_ABBA_SETUP, G_ABBA, G_TO_SETUP, G_TO, G_AAQ_SETUP, G_AAQ,
       G_AAQ_LONELY, G_SEEN_AA, G_SEEN_ABBA, G_SEEN_TO, G_SEEN_AAQ, G_UNCONTENDED };

/* lock keys in `locks` */
#define K_SHARED 0
#define K_A 1
#define K_B 2
#define K_AA 8	   /* + cpu: private AA locks */
#define K_M 72	   /* + cpu: private outer lock of aa_queued */
#define K_TO 140   /* 34 locks for the timeout */
#define NTO 34
#define SPIN 16384  /* polls for a contender, then give up (LONELY) */
#define SETTLE 2048 /* polls after one is seen: its pending bit gets set */
#define SPIN_ABBA 2048 /* polls for the other side's first lock */

struct elem {
	struct bpf_res_spin_lock lock;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct elem);
} locks SEC(".maps");

struct shared {
	__u32 waiters;	/* CPUs between "about to lock" and "got it" */
	__u32 sink;
	__u64 addr[4];	/* kernel addresses of the shared, A and B locks; [3]: key 0 */
	__u32 hold[4];	/* ab/ba: holds its first lock (by key) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct shared);
} shared SEC(".maps");

static __always_inline struct elem *lock_at(__u32 key)
{
	return bpf_map_lookup_elem(&locks, &key);
}

static __always_inline struct shared *get_shared(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&shared, &zero);
}

/* Remember where `locks` starts, so on_end can tell our locks from others. */
static __always_inline void note_base(struct shared *sh)
{
	struct elem *e0 = lock_at(0);

	if (sh && e0)
		sh->addr[3] = (__u64)&e0->lock;
}

SEC("tc")
int aa(struct __sk_buff *skb)
{
	__u32 key = K_AA + (bpf_get_smp_processor_id() & 63);
	struct counts *setup = group(G_AA_SETUP), *fail = group(G_AA);
	struct elem *e1 = lock_at(key), *e2 = lock_at(key);
	int r;

	if (!setup || !fail || !e1 || !e2)
		return 1;
	note_base(get_shared());
	r = bpf_res_spin_lock(&e1->lock);
	tally(setup, r);
	if (r)
		return 0;
	r = bpf_res_spin_lock(&e2->lock);
	tally(fail, r);
	if (!r)
		bpf_res_spin_unlock(&e2->lock);
	bpf_res_spin_unlock(&e1->lock);
	return 0;
}

/* A lock nobody else takes, taken and released: the kfunc's success path
 * (benchmarks/rqspinlock_kfunc.py: what lstrace costs when nothing fails). */
SEC("tc")
int uncontended(struct __sk_buff *skb)
{
	__u32 key = K_AA + (bpf_get_smp_processor_id() & 63);
	struct counts *c = group(G_UNCONTENDED);
	struct elem *e = lock_at(key);
	int r;

	if (!c || !e)
		return 1;
	r = bpf_res_spin_lock(&e->lock);
	tally(c, r);
	if (!r)
		bpf_res_spin_unlock(&e->lock);
	return 0;
}

static __always_inline int abba(__u32 first, __u32 second)
{
	struct counts *setup = group(G_ABBA_SETUP), *fail = group(G_ABBA);
	struct elem *e1 = lock_at(first), *e2 = lock_at(second);
	struct shared *sh = get_shared();
	int r, i;

	if (!setup || !fail || !e1 || !e2 || !sh)
		return 1;
	sh->addr[first] = (__u64)&e1->lock;
	note_base(sh);
	r = bpf_res_spin_lock(&e1->lock);
	tally(setup, r);
	if (r)
		return 0;
	sh->hold[first & 3] = 1;
	for (i = 0; i < SPIN_ABBA; i++)	/* make the cycle likely, not lucky */
		if (*(volatile __u32 *)&sh->hold[second & 3])
			break;
	r = bpf_res_spin_lock(&e2->lock);
	tally(fail, r);
	if (!r)
		bpf_res_spin_unlock(&e2->lock);
	sh->hold[first & 3] = 0;
	bpf_res_spin_unlock(&e1->lock);
	return 0;
}

SEC("tc")
int ab(struct __sk_buff *skb)
{
	return abba(K_A, K_B);
}

SEC("tc")
int ba(struct __sk_buff *skb)
{
	return abba(K_B, K_A);
}

SEC("tc")
int timeout(struct __sk_buff *skb)
{
	struct counts *setup = group(G_TO_SETUP), *fail = group(G_TO);
	struct bpf_res_spin_lock *held[NTO + 1] = {};
	struct elem *e;
	int i, r = 0;

	if (!setup || !fail)
		return 1;
	note_base(get_shared());
	for (i = 0; i < NTO; i++) {
		__u32 key = K_TO + i;	/* a fresh stack slot keeps the bound */

		e = bpf_map_lookup_elem(&locks, &key);
		if (!e)
			return 1;
		held[i] = &e->lock;
	}
	{
		__u32 key = K_TO + NTO - 2;	/* already held */

		e = bpf_map_lookup_elem(&locks, &key);
		if (!e)
			return 1;
		held[NTO] = &e->lock;
	}
	for (i = 0; i < NTO; i++) {
		r = bpf_res_spin_lock(held[i]);
		tally(setup, r);
		if (r)
			goto out;
	}
	r = bpf_res_spin_lock(held[NTO]);
	tally(fail, r);
	if (!r)
		bpf_res_spin_unlock(held[NTO]);
out:
	for (i = i - 1; i >= 0; i--)
		bpf_res_spin_unlock(held[i]);
	return 0;
}

SEC("tc")
int aa_queued(struct __sk_buff *skb)
{
	__u32 cpu = bpf_get_smp_processor_id() & 63;
	struct counts *setup = group(G_AAQ_SETUP), *fail = group(G_AAQ);
	struct counts *lonely = group(G_AAQ_LONELY);
	struct elem *e1 = lock_at(K_SHARED), *e2 = lock_at(K_SHARED), *m = lock_at(K_M + cpu);
	struct shared *sh = get_shared();
	unsigned long irq;
	__u32 sink = 0;
	int r, i, seen = 0;

	if (!setup || !fail || !lonely || !e1 || !e2 || !m || !sh)
		return 1;
	sh->addr[K_SHARED] = (__u64)&e1->lock;
	note_base(sh);
	/* A private lock taken with IRQs off first, so nothing can delay this
	 * CPU between announcing itself and setting the pending bit. */
	r = bpf_res_spin_lock_irqsave(&m->lock, &irq);
	tally(setup, r);
	if (r)
		return 0;
	__sync_fetch_and_add(&sh->waiters, 1);
	r = bpf_res_spin_lock(&e1->lock);
	__sync_fetch_and_add(&sh->waiters, -1);
	tally(setup, r);
	if (r)
		goto out_m;
	for (i = 0; i < SPIN; i++) {
		if (*(volatile __u32 *)&sh->waiters) {
			seen = 1;
			break;
		}
	}
	if (seen) {
		for (i = 0; i < SETTLE; i++)
			sink += *(volatile __u32 *)&sh->waiters;
		sh->sink = sink;
		r = bpf_res_spin_lock(&e2->lock);
		tally(fail, r);
		if (!r)
			bpf_res_spin_unlock(&e2->lock);
	} else {
		lonely->c[C_CALLS]++;
	}
	bpf_res_spin_unlock(&e1->lock);
out_m:
	bpf_res_spin_unlock_irqrestore(&m->lock, &irq);
	return 0;
}

/* Which of our failures reach lock:contention_end: it fires on the queued
 * slow path only, and 7.x finds AA before queueing. Counting here, on our
 * own locks (elements of `locks`, 8 bytes apart), makes `visible` a
 * measurement, not a claim. */
SEC("raw_tp/contention_end")
int on_end(__u64 *ctx)
{
	struct shared *sh = get_shared();
	__u64 lock = ctx[0], key;
	int ret = (int)ctx[1];
	__u32 g;

	if (ret >= 0 || !sh || !sh->addr[3] || lock < sh->addr[3])
		return 0;
	key = (lock - sh->addr[3]) / 8;
	if (key == K_SHARED || (key >= K_M && key < K_M + 64))
		g = G_SEEN_AAQ;
	else if (key == K_A || key == K_B)
		g = G_SEEN_ABBA;
	else if (key >= K_AA && key < K_AA + 64)
		g = G_SEEN_AA;
	else if (key >= K_TO && key < K_TO + NTO)
		g = G_SEEN_TO;
	else
		return 0;
	count_ret(g, ret);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
