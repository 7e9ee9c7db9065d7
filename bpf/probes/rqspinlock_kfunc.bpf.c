// SPDX-License-Identifier: GPL-2.0
/* lstrace probe rqspinlock_kfunc (lstrace/probes/rqspinlock_kfunc.py): appended
 * by lstrace/program.py when the probe is planned; uses the core (counters,
 * bpf/core/: state, guard, record_event).
 *
 * A failed bpf_res_spin_lock*() kfunc reports itself to the calling program's
 * stderr stream (6.17+, ecec5b5743bf; kernel/bpf/rqspinlock.c
 * bpf_prog_report_rqspinlock_violation, notrace): each line it stages passes
 * through the traceable __bpf_stream_push_str(log, str, len) (kernel/bpf/stream.c),
 * in this order:
 *   "ERROR: <AA or ABBA deadlock detected|Timeout detected> for bpf_res_spin_lock[_irqsave]"
 *   "Attempted lock   = 0x<lock>"
 *   "Total held locks = <n>"
 *   "Held lock[<i>] = 0x<lock>"      once per lock this CPU still holds (at most 31)
 * One program reads each staged line (never the stream: its owner reads that)
 * and keeps a per-CPU parse state: a deadlock is AA when the attempted lock is
 * among this CPU's held locks, else ABBA; a timeout is counted at its first
 * line.  The lock values are compared as text, so hashed %p prints work too.
 * The words matched come from Python (RQK_* defines, one source). */

struct rqk_state {
	u32 step;       /* 0 idle, 1 after ERROR (deadlock), 2 counting held lines */
	u32 held_left;  /* held lines still to read */
	u32 aa;         /* a held line equals the attempted lock */
	u32 pad;
	u64 att[RQK_VAL_WORDS];   /* the attempted lock's text */
};
BPF_PERCPU_ARRAY(rqk_state, struct rqk_state, 1);

/* The first RQK_HEAD_WORDS words of a line, never past its length (the
 * staged text may end at a page's end); the rest stays zero. */
static __always_inline void rqk_read(u64 *w, u64 str, u64 len)
{
	u64 n = len < RQK_HEAD_WORDS * 8 ? len : RQK_HEAD_WORDS * 8;
	bpf_probe_read_kernel(w, n, (void *)str);
}

/* The value after a line's fixed prefix of `off` bytes, up to its length. */
static __always_inline void rqk_value(u64 *v, u64 str, u64 len, u64 off)
{
	u64 n = len > off ? len - off : 0;
	if (n > RQK_VAL_WORDS * 8)
		n = RQK_VAL_WORDS * 8;
	bpf_probe_read_kernel(v, n, (void *)(str + off));
}

static __always_inline void rqk_count(void *ctx, struct counters *c, u32 e, u32 kind)
{
	if (in_nmi_now())       /* the report runs in the failing context */
		kind = KIND_NMI;
	if (kind >= N_RQ_KIND)
		return;
	__sync_fetch_and_add(&c->rqk[e][kind], 1);
	record_event(ctx, EVENTS_RQSPINLOCK, RQ_OUTCOME(e));
}

/* "Total held locks = %d": at most two digits matter (RQK_NR_HELD slots) */
static __always_inline void rqk_total(void *ctx, struct counters *c, struct rqk_state *r,
				      u64 *w)
{
	u8 d0 = w[RQK_TOTAL_OFF / 8] >> (8 * (RQK_TOTAL_OFF % 8));
	u8 d1 = w[(RQK_TOTAL_OFF + 1) / 8] >> (8 * ((RQK_TOTAL_OFF + 1) % 8));
	u32 n = d0 >= '0' && d0 <= '9' ? d0 - '0' : 0;
	if (d1 >= '0' && d1 <= '9')
		n = n * 10 + d1 - '0';
	r->held_left = n < RQK_NR_HELD ? n : RQK_NR_HELD;
	r->aa = 0;
	r->step = 2;
	if (!r->held_left) {
		rqk_count(ctx, c, RQ_E_EDEADLK, KIND_ABBA);
		r->step = 0;
	}
}

/* "Held lock[i] = 0x...": AA if one equals the attempted lock; the last one
 * counts the deadlock. */
static __always_inline void rqk_held(void *ctx, struct counters *c, struct rqk_state *r,
				     u64 str, u64 len)
{
	u64 v[RQK_VAL_WORDS] = {};
	rqk_value(v, str, len, RQK_HELD_OFF);
	int same = 1;
#pragma unroll
	for (int i = 0; i < RQK_VAL_WORDS; i++)
		same &= v[i] == r->att[i];
	r->aa |= same;
	if (r->held_left)
		r->held_left--;
	if (!r->held_left) {
		rqk_count(ctx, c, RQ_E_EDEADLK, r->aa ? KIND_AA : KIND_ABBA);
		r->step = 0;
	}
}

static __always_inline int rqk_line(void *ctx, u64 str, u64 len)
{
	u32 zero = 0;
	struct rqk_state *r = rqk_state.lookup(&zero);
	struct cpu_state *s = state.lookup(&zero);
	struct counters *c = counters.lookup(&zero);
	if (!r || !s || !c || !guard_enter(s, c))
		return 0;
	u64 w[RQK_HEAD_WORDS] = {};
	rqk_read(w, str, len);
	if (RQK_IS_DEADLOCK(w) || RQK_IS_TIMEOUT(w)) {
		if (r->step)            /* a report nested into another (IRQ): kind lost */
			rqk_count(ctx, c, RQ_E_EDEADLK, KIND_UNKNOWN);
		r->step = 0;
		if (RQK_IS_TIMEOUT(w))
			rqk_count(ctx, c, RQ_E_ETIMEDOUT, KIND_TIMEOUT);
		else
			r->step = 1;
	} else if (r->step == 1 && RQK_IS_ATTEMPTED(w)) {
		__builtin_memset(r->att, 0, sizeof(r->att));
		rqk_value(r->att, str, len, RQK_ATTEMPTED_OFF);
	} else if (r->step == 1 && RQK_IS_TOTAL(w)) {
		rqk_total(ctx, c, r, w);
	} else if (r->step == 2 && RQK_IS_HELD(w)) {
		rqk_held(ctx, c, r, str, len);
	} else if (r->step) {           /* an unexpected line: count, kind unknown */
		rqk_count(ctx, c, RQ_E_EDEADLK, KIND_UNKNOWN);
		r->step = 0;
	}
	guard_exit(s);
	return 0;
}
