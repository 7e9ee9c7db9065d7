// SPDX-License-Identifier: GPL-2.0
/* lstrace probe rqspinlock (lstrace/probes/rqspinlock.py): appended by lstrace/program.py
 * when the probe is planned; uses the core (bpf/core/: state, guard, hist_add,
 * record_event, percpu_addr).  LCB_F_SPIN, RQ_* and KIND_* come from Python. */

/* ---- rqspinlock failures at lock:contention_begin/end (raw tracepoints,
 * which unlike perf-based tracepoints also run inside bpf() map syscalls) */

int lst_contention_begin(struct bpf_raw_tracepoint_args *ctx)
{
	struct cpu_state *s = this_cpu_state();
	if (!s)
		return 0;
	__sync_fetch_and_add(&s->lock_depth, 1);
	u32 d = s->lock_depth - 1;
	if (d < N_LOCK_LEVELS) {
		s->lock[d] = ctx->args[0];
		s->lock_flags[d] = ctx->args[1];
		s->lock_ts[d] = WITH_LATENCY ? bpf_ktime_get_ns() : 0;   /* wait histogram: opt-in */
	} else {
		__sync_fetch_and_add(&s->lock_depth, -1);
	}
	return 0;
}

static __always_inline u64 caller_of(u64 ip, u32 unknown_zero)
{
	/* Uniform binary search (N_RANGES is a power of two): base ends at the
	 * last range starting at or below ip.  base starts from a value the
	 * verifier cannot know (always 0 at run time), so it tracks one range of
	 * values instead of one state per path: a search on constants explodes
	 * on 7.x's verifier (1M insns, E2BIG). */
	u32 base = unknown_zero;
#pragma unroll
	for (u32 step = N_RANGES / 2; step >= 1; step /= 2) {
		u32 probe = base + step;
		struct caller_range *r = callers.lookup(&probe);
		if (r && ip >= r->start)
			base = probe;
	}
	struct caller_range *r = callers.lookup(&base);
	if (r && ip >= r->start && ip < r->end)
		return r->caller;
	return N_CALLER;     /* none */
}

#ifndef RQ_KFUNC_REPORTS
#define RQ_KFUNC_REPORTS 0
#endif

/* This CPU's contention_begin level of `lock`, freed (its wait start and flags
 * out); -1 if none (the begin was skipped or nested too deep). */
static __always_inline int pop_lock(struct cpu_state *s, u64 lock, u64 *ts, u64 *flags)
{
	u32 d = s->lock_depth;
	int found = -1;
#pragma unroll
	for (int i = N_LOCK_LEVELS - 1; i >= 0; i--) {
		if (found < 0 && i < d && s->lock[i] == lock)
			found = i;
	}
	if (found >= 0 && found < N_LOCK_LEVELS) {
		*ts = s->lock_ts[found];
		*flags = s->lock_flags[found];
		s->lock[found] = 0;
#pragma unroll
		for (int i = N_LOCK_LEVELS - 1; i >= 0; i--) {
			if (i == s->lock_depth - 1 && s->lock[i] == 0)
				__sync_fetch_and_add(&s->lock_depth, -1);
		}
	}
	return found;
}

/* The stack: is the slow path on it (an rqspinlock's wait), and the first two
 * frames past it (*ip0, *ip1: the lock's user). */
static __always_inline int rq_frames(void *ctx, int is_rq, u64 *ip0, u64 *ip1)
{
	u64 ips[STACK_DEPTH] = {};
	bpf_get_stack(ctx, ips, sizeof(ips), 0);
#pragma unroll
	for (int i = 0; i < STACK_DEPTH; i++) {
		if (ips[i] >= RQ_SLOWPATH_START && ips[i] < RQ_SLOWPATH_END) {
			is_rq = 1;
			*ip0 = *ip1 = 0;
		} else if (!*ip0) {
			*ip0 = ips[i];
		} else if (!*ip1) {
			*ip1 = ips[i];
		}
	}
	return is_rq;
}

/* A failed acquisition (ret) of `lock` by `caller`: count it by errno and kind
 * (the failing attempt is still the top of this CPU's held locks), and leave
 * the lock for the lock user's boundary probe, which then does not count it
 * again (rq_boundary, bpf/probes/helpers.bpf.c). */
static __always_inline void count_rq(void *ctx, struct cpu_state *s, struct counters *c, u64 lock,
				     int ret, u64 caller)
{
	u32 e = RQ_ERRNO_INDEX(ret);        /* layout.RQ_ERRNOS; N_RQ_ERRNO: neither */
	if (e < N_RQ_ERRNO) {
		u32 kind = rq_kind(lock, e, 1);
		if (kind < N_RQ_KIND)
			__sync_fetch_and_add(&c->rq[e][kind][caller], 1);
		s->rq_end_lock = lock;
		s->rq_end_user = caller;
		s->rq_end_tid = bpf_get_current_pid_tgid();
		record_event(ctx, EVENTS_RQSPINLOCK, RQ_OUTCOME(e));
	}
}

static __always_inline void contention_end(struct bpf_raw_tracepoint_args *ctx,
					   struct cpu_state *s, struct counters *c)
{
	u64 lock = ctx->args[0];
	int ret = (int)ctx->args[1];
	u64 ts = 0, flags = 0, ip0 = 0, ip1 = 0;
	int found = pop_lock(s, lock, &ts, &flags);
	if (!(flags & LCB_F_SPIN) && ret == 0)
		return;
	/* Only rqspinlock fails; a failed mutex (ww_mutex -EDEADLK) is not ours. */
	if (ret != 0 && !(flags & LCB_F_SPIN) && found >= 0)
		return;
	if (!rq_frames(ctx, ret != 0, &ip0, &ip1))
		return;
	/* binary searches outside the loop: inside it, 7.x's verifier walks
	 * every combination of branches and gives up (E2BIG at 1M insns) */
	u64 caller = caller_of(ip0, s->opaque_zero);
	if (caller == N_CALLER && ip1)
		caller = caller_of(ip1, s->opaque_zero);
	if (caller >= N_CALLER)
		caller = N_CALLER - 1;          /* "other" */
	if (ts)
		hist_add(c->rq_wait, bpf_ktime_get_ns() - ts);
	/* the kfunc's failures are counted at their stream report, exactly
	 * (bpf/probes/rqspinlock_kfunc.bpf.c), when that probe is planned */
	if (!(RQ_KFUNC_REPORTS && caller == CALLER_RES_SPIN_LOCK))
		count_rq(ctx, s, c, lock, ret, caller);
}

int lst_contention_end(struct bpf_raw_tracepoint_args *ctx)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	struct counters *c = counters.lookup(&zero);
	if (!s || !c || !guard_enter(s, c))
		return 0;
	contention_end(ctx, s, c);
	guard_exit(s);
	return 0;
}
