// SPDX-License-Identifier: GPL-2.0
/* htab-busy / htab-deadlock: a BPF program nested inside a hash-map update
 * on the same CPU, on the same bucket, counting its own returns.
 *
 *   outer     tc program, test-run by a thread pinned to each CPU: per round
 *             it gives this CPU's element an armed bpf_timer (init,
 *             set_callback, start with a far expiry), then replaces the
 *             element with bpf_map_update_elem().  For a preallocated hash
 *             map the kernel frees the old element's special fields while it
 *             holds the bucket lock (htab_map_update_elem() ->
 *             check_and_free_fields() -> bpf_timer_cancel_and_free() ->
 *             hrtimer cancel), so the timer:hrtimer_cancel tracepoint fires
 *             there, on this CPU.
 *   nested    tp_btf on hrtimer_cancel (a tracepoint, no kprobe or fentry):
 *             when the cancelled hrtimer is a BPF timer (its function is
 *             bpf_timer_cb, address from kallsyms in cfg.arg4; 0 = no
 *             filter) and this CPU is inside the outer replace, it updates
 *             the same key of the same map:
 *               before 6.15  htab_lock_bucket() finds this CPU's map_locked
 *                            counter held: -EBUSY;
 *               6.15+        the bucket lock is an rqspinlock already held
 *                            by this CPU: AA, -EDEADLK (or -ETIMEDOUT).
 *             tp_btf, not raw_tp: the verifier refuses maps with a bpf_timer
 *             in kprobe/tracepoint/raw_tp programs ("tracing progs cannot use
 *             bpf_timer yet", kernel/bpf/verifier.c), not in BPF_PROG_TYPE_TRACING.
 *   nested_cancel  the same from fentry on bpf_obj_cancel_fields (7.x): there
 *             the replace only cancels the old element's fields under the lock
 *             (check_and_cancel_fields()), and a timer cancelled with IRQs off
 *             is deferred to irq_work, whose hrtimer_cancel fires after the
 *             unlock (measured on 7.3: the tp_btf update then succeeds).  The
 *             tools/testing/selftests/bpf htab_update test nests the same way.
 *             Loaded only where that function exists and fentry is allowed;
 *             it runs before the timer cancel, so it takes the round.
 * Only helpers' own return values are counted: exact per CPU. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "repro.h"
#include "nest.h"

#define CLOCK_MONOTONIC_ 1
#define FAR_NS (3600ULL * 1000000000ULL)   /* never expires during a run */

/* stats groups */
enum { G_OUTER, G_NESTED, G_ARM, G_NESTED_CANCEL, G_INSERT };

struct val {
	struct bpf_timer t;
	__u64 n;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);     /* preallocated: fields freed under the lock */
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct val);
} htab SEC(".maps");

static int timer_cb(void *map, __u32 *key, struct val *v)
{
	return 0;
}

/* per CPU: the last failed arm, [ARM_ERRNO] its return, [ARM_STEP] which
 * call returned it (reported: a round that did not arm did not nest) */
enum { ARM_ERRNO, ARM_STEP };
enum { ARM_INIT = 1, ARM_CALLBACK, ARM_START };
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __s64);
} last_arm_fail SEC(".maps");

/* cfg.arg5 = N > 0: every Nth round on a CPU that gets as far as starting
 * its timer starts it with invalid flags (-EINVAL after init succeeded): a
 * test's way to check that a round that failed to arm leaves the later rounds
 * intact.  Counted over the rounds that reached the start (ok + other), so the
 * count stays exact if the kernel fails some inits itself. */
#define BAD_FLAGS (1ULL << 63)
static __always_inline int inject(struct counts *arm)
{
	struct cfg *c = get_cfg();
	__u64 every = c ? c->arg5 : 0;

	return every && (arm->c[C_OK] + arm->c[C_OTHER]) % every == every - 1;
}

static __always_inline void arm_failed(__s64 step, __s64 r)
{
	__u32 k = ARM_ERRNO;
	__s64 *v = bpf_map_lookup_elem(&last_arm_fail, &k);

	if (v)
		*v = r;
	k = ARM_STEP;
	v = bpf_map_lookup_elem(&last_arm_fail, &k);
	if (v)
		*v = step;
}

SEC("tc")
int outer(struct __sk_buff *skb)
{
	__u32 key = bpf_get_smp_processor_id() & 63;
	struct counts *arm = group(G_ARM), *upd = group(G_OUTER);
	struct val zero = {}, *v;
	__u32 *in = inside_flag();
	long r, step;

	if (!arm || !upd || !in)
		return 1;
	v = bpf_map_lookup_elem(&htab, &key);
	if (!v) {      /* the first round, or the one after a failed arm */
		count_ret(G_INSERT, (int)bpf_map_update_elem(&htab, &key, &zero, BPF_ANY));
		v = bpf_map_lookup_elem(&htab, &key);
		if (!v)
			return 1;
	}
	/* arm: any failure here means no nesting this round (counted apart) */
	step = ARM_INIT;
	r = bpf_timer_init(&v->t, &htab, CLOCK_MONOTONIC_);
	if (!r) {
		step = ARM_CALLBACK;
		r = bpf_timer_set_callback(&v->t, timer_cb);
	}
	if (!r) {
		step = ARM_START;
		r = bpf_timer_start(&v->t, FAR_NS, inject(arm) ? BAD_FLAGS : 0);
	}
	tally(arm, r);
	if (r) {
		arm_failed(step, r);
		/* a timer left initialized would fail every later init with
		 * -EBUSY: delete the element (freeing it) so rounds stay
		 * independent; *in is 0, so nothing nests in this delete */
		bpf_map_delete_elem(&htab, &key);
		return 0;
	}
	*in = 1;
	r = (int)bpf_map_update_elem(&htab, &key, &zero, BPF_ANY);    /* see nest() */
	*in = 0;
	tally(upd, r);
	return 0;
}

/* per CPU: the last return of a nested update counted as "other" (its errno
 * is reported: no outcome category hides an unexpected error) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} last_other SEC(".maps");

/* The nested update, once per outer replace (the flag is cleared first). */
static __always_inline void nest(__u32 *in, __u32 g)
{
	__u32 key = bpf_get_smp_processor_id() & 63, zero_key = 0;
	struct val zero = {};
	__s64 *last;
	int r;

	*in = 0;
	/* int, not long: before 6.4 the map ops returned int and the verifier
	 * turns the helper into a direct call of htab_map_update_elem, so the
	 * upper 32 bits of r0 are zero (measured on 6.1: -EBUSY read as
	 * 4294967280).  Since 6.4 (map ops return long) the cast is a no-op. */
	r = (int)bpf_map_update_elem(&htab, &key, &zero, BPF_ANY);
	count_ret(g, r);
	if (r && r != -EBUSY && r != -EDEADLK && r != -ETIMEDOUT) {
		last = bpf_map_lookup_elem(&last_other, &zero_key);
		if (last)
			*last = r;
	}
}

SEC("tp_btf/hrtimer_cancel")
int BPF_PROG(nested, struct hrtimer *timer)
{
	struct cfg *c = get_cfg();
	__u32 *in = inside_flag();

	if (!c || !in || !*in)
		return 0;
	if (c->arg4 && (__u64)timer->function != c->arg4)
		return 0;
	nest(in, G_NESTED);
	return 0;
}

SEC("fentry/bpf_obj_cancel_fields")
int BPF_PROG(nested_cancel, struct bpf_map *map, void *obj)
{
	__u32 *in = inside_flag();

	if (!in || !*in || map != (struct bpf_map *)&htab)
		return 0;
	nest(in, G_NESTED_CANCEL);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
