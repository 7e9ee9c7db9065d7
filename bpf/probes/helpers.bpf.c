// SPDX-License-Identifier: GPL-2.0
/* lstrace: the helper family's classification (lstrace/probes/helpers/):
 * appended by lstrace/program.py when a helper probe is planned, before the
 * generated glue that calls on_entry / on_exit (kprobe mode) or stamp_entry /
 * count_exit (fentry mode) per probed function.  RET_KIND_* and ROLE_* are the
 * catalogue's codes, MAX_ERRNO and OUTCOME_CASES come from lstrace/layout.py. */
#define F_CREATE ((u64)BPF_LOCAL_STORAGE_GET_F_CREATE)
#define FLAGS_UNKNOWN (~0ULL)   /* kretprobes do not see arguments */
#define PENDING_MAX_DIST 2048   /* bytes between the two trampoline frames */

/* OUTCOME_CASES: layout.ERRNO_OUTCOMES */
static __always_inline u32 outcome_of_err(s64 err)
{
	switch (-err) {
	case 0: return OUT_OK;
	OUTCOME_CASES
	}
	return OUT_OTHER;
}

static __always_inline int is_err(s64 v)
{
	return v < 0 && v >= -MAX_ERRNO;
}

/* The outcome of a call that returned `ret`, by its return kind; a get's NULL
 * (RET_KIND_PTR_OR_NULL) is classified by its caller, a void call is ok. */
static __always_inline u32 ret_outcome(u32 ret_kind, s64 ret)
{
	if (ret_kind == RET_KIND_ERRNO)
		return outcome_of_err(ret);
	if (ret_kind == RET_KIND_ERR_PTR)
		return is_err(ret) ? outcome_of_err(ret) : OUT_OK;
	if (ret_kind == RET_KIND_ERR_PTR_OR_NULL)
		return ret == 0 ? OUT_NOT_FOUND : (is_err(ret) ? outcome_of_err(ret) : OUT_OK);
	return OUT_OK;
}

/* kprobe mode: entry and exit programs (a kretprobe sees no arguments).  They
 * call no helper that takes a lock on their common path (the kernel already
 * bounds each program's recursion), so lstrace's nesting guard is taken only
 * on the failure path (record_event), as in counting mode. */
static __always_inline int on_entry(void *ctx, u32 probe, u8 role, u64 arg, u64 busy_var,
				    int clock)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	if (!s)
		return 0;
	struct frame *f = push_frame(s);
	if (f) {
		f->ts = stamp_of(s, clock);
		f->probe = probe;
		f->role = role;
		f->tid = bpf_get_current_pid_tgid();
		f->arg = arg;
		f->busy = busy_now(busy_var) ? 1 : 0;
		f->child_err = 0;
		f->child_seen = 0;
	}
	return 0;
}

/* The newest open get of this task: the get an update is nested in. */
static __always_inline void tell_parent_get(struct cpu_state *s, u32 tid, s64 ret)
{
	u64 newest;
	u32 idx;
	SLOT_SEARCH(s, s->f, N_FRAMES, >, 0, e->tid == tid && e->role == ROLE_GET, newest, idx);
	struct frame *f = frame_at(s, idx);
	if (f) {
		f->child_seen = 1;
		f->child_err = is_err(ret) ? ret : 0;
	}
}

/* kprobe mode: a get that returned NULL, from its frame (`have`: found). */
static __always_inline u32 frame_null_outcome(struct frame *f, int have, u32 create_null)
{
	u64 flags = have ? f->arg : FLAGS_UNKNOWN;
	if (flags == FLAGS_UNKNOWN)
		return OUT_NOT_FOUND;           /* kretprobe without its frame */
	if (flags & ~F_CREATE)
		return OUT_OTHER;               /* invalid flags */
	if (!(flags & F_CREATE))
		/* a lookup calls no update: a child_seen here came from another
		 * get's update (an IRQ program whose get entry the kernel
		 * skipped), never from this call */
		return f->busy ? OUT_BUSY : OUT_NOT_FOUND;
	if (f->child_seen)
		return f->child_err ? outcome_of_err(f->child_err) : OUT_OTHER;
	return create_null;                     /* no update tried: busy (gen A/B) */
}

/* kprobe mode's exit: a kretprobe sees no arguments, a get's flags come from
 * its frame. */
static __always_inline int on_exit(void *ctx, u32 probe, u32 ret_kind, s64 ret, u32 create_null,
				   int use_frame, int clock, u32 user)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	struct counters *c = counters.lookup(&zero);
	if (!s || !c)
		return 0;
	struct frame f = {};
	u32 tid = bpf_get_current_pid_tgid();
	int have = use_frame ? take_frame(s, probe, tid, &f) : 0;
	u32 out = OUT_OK;
	if (ret_kind == RET_KIND_PTR_OR_NULL)  /* get helpers: NULL = failed */
		out = ret == 0 ? frame_null_outcome(&f, have, create_null) : OUT_OK;
	else
		out = ret_outcome(ret_kind, ret);
	if (out >= N_OUTCOMES)
		out = OUT_OTHER;
	if (probe < N_PROBES) {
		__sync_fetch_and_add(&c->helper[probe][out], 1);
		if (clock && have && f.ts)
			hist_add(c->lat[probe], bpf_ktime_get_ns() - f.ts);
	}
	/* A failing update nested in a get: tell the get why it returns NULL
	 * (a successful update makes the get return non-NULL: nothing to say). */
	if (ret_kind == RET_KIND_ERR_PTR && is_err(ret))
		tell_parent_get(s, tid, ret);
	if (out != OUT_OK && out != OUT_NOT_FOUND && guard_enter(s, c)) {
		rq_boundary(s, c, user, out, 0, 0);     /* a kretprobe sees no key: no lock */
		record_event(ctx, EVENTS_HELPERS + probe, out);
		guard_exit(s);
	}
	return 0;
}

/* ---- fentry mode.  Counting (the default): one fexit program per helper, no
 * entry program, no frame, no clock.  The success path is one lookup, one
 * classification and one atomic add; the kernel's per-program recursion
 * check on trampolines bounds nesting, and the failure path (which calls
 * helpers) takes lstrace's guard.  --latency adds an entry program that only
 * stamps a frame (stamp_entry): the fexit classifies exactly as in counting
 * mode, then times the call from its frame. */

static __always_inline void time_exit(void *ctx, struct counters *c, u32 probe)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	if (!s)
		return;
	u64 ts = take_stamp(s, probe, sp_of(s, ctx));
	if (ts && probe < N_PROBES)
		hist_add(c->lat[probe], bpf_ktime_get_ns() - ts);
}

/* The enclosing get's fexit: take the newest record its nested update left. */
static __always_inline int take_pending(struct cpu_state *s, u64 sp, u32 tid, u64 owner, u64 map,
					u64 value, s32 *err)
{
	int found = 0;
#pragma unroll
	for (int k = 0; k < N_PENDING; k++) {
		/* newest first: pend_head - 1, - 2, ... */
		u64 i = (s->pend_head - 1 - k) % N_PENDING;
		asm volatile("" : "+r"(i));     /* as frame_at */
		if (i >= N_PENDING)
			continue;
		struct pending *p = &s->pend[i];
		if (!found && p->sp && p->tid == tid && p->owner == owner && p->map == map &&
		    p->value == value && p->sp < sp && sp - p->sp < PENDING_MAX_DIST) {
			*err = p->err;
			p->sp = 0;
			found = 1;
		}
	}
	return found;
}

static __always_inline void put_pending(struct cpu_state *s, u64 sp, u32 tid, u64 owner, u64 map,
					u64 value, s32 err)
{
	__sync_fetch_and_add(&s->pend_head, 1);
	u64 i = (s->pend_head - 1) % N_PENDING;
	asm volatile("" : "+r"(i));
	if (i >= N_PENDING)
		return;
	struct pending *p = &s->pend[i];
	p->owner = owner;
	p->map = map;
	p->value = value;
	p->tid = tid;
	p->err = err;
	p->sp = sp;
}

/* A get that returned NULL (the failure path): why?  Same rules as on_exit. */
static __always_inline u32 get_null_outcome(void *ctx, struct cpu_state *s, u64 flags, u64 owner,
					    u64 map, u64 value, u32 create_null, u64 busy_var)
{
	if ((flags & ~F_CREATE) || !owner)
		return OUT_OTHER;                  /* invalid flags, NULL task/cgroup/sk/inode */
	if (!(flags & F_CREATE))                   /* a lookup: busy only where lookups fail on it */
		return busy_now(busy_var) ? OUT_BUSY : OUT_NOT_FOUND;
	s32 err = 0;
	if (take_pending(s, sp_of(s, ctx), bpf_get_current_pid_tgid(), owner, map, value, &err))
		return outcome_of_err(err);
	return create_null;                        /* no update failed: busy (gen A/B) */
}

/* ret_kind as in on_exit; for updates (RET_KIND_ERR_PTR) owner/map/value/flags
 * are the update's arguments, for gets the get's (map, owner, value, flags),
 * for hash-map ops map and key (as owner); user as in rq_boundary. */
static __always_inline int count_exit(void *ctx, u32 probe, u32 ret_kind, s64 ret, u32 create_null,
				      u64 flags, u64 owner, u64 map, u64 value, u64 busy_var, int clock,
				      u32 user)
{
	u32 zero = 0;
	struct counters *c = counters.lookup(&zero);
	if (!c)
		return 0;
	int get = ret_kind == RET_KIND_PTR_OR_NULL;
	u32 out = get ? OUT_OK : ret_outcome(ret_kind, ret);
	if (clock)
		time_exit(ctx, c, probe);
	if ((!get && out == OUT_OK) || (get && ret != 0)) {
		if (probe < N_PROBES)                  /* the hot path ends here */
			__sync_fetch_and_add(&c->helper[probe][OUT_OK], 1);
		return 0;
	}
	struct cpu_state *s = state.lookup(&zero);
	if (!s || !guard_enter(s, c))
		return 0;
	if (get)
		out = get_null_outcome(ctx, s, flags, owner, map, value, create_null, busy_var);
	if (out >= N_OUTCOMES)
		out = OUT_OTHER;
	if (probe < N_PROBES)
		__sync_fetch_and_add(&c->helper[probe][out], 1);
	/* a get's update (BPF_NOEXIST) failed: leave why for the get */
	if (ret_kind == RET_KIND_ERR_PTR && flags == BPF_NOEXIST && is_err(ret))
		put_pending(s, sp_of(s, ctx), bpf_get_current_pid_tgid(), owner, map, value, ret);
	rq_boundary(s, c, user, out, map, owner);
	if (out != OUT_OK && out != OUT_NOT_FOUND)
		record_event(ctx, EVENTS_HELPERS + probe, out);
	guard_exit(s);
	return 0;
}
