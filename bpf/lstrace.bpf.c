// SPDX-License-Identifier: GPL-2.0
/* lstrace: per-CPU health counters for BPF local storage and rqspinlocks.
 *
 * BCC C.  Compiled by lstrace/program.py, which appends the C of each planned
 * probe (lstrace/probes/: the helper family's glue for the running kernel,
 * fentry/fexit or kprobe/kretprobe per function with prototypes read from
 * BTF; a tracepoint probe's bpf/probes/<name>.bpf.c) and passes every
 * dimension and kernel offset as -D defines (lstrace/layout.py is the single
 * source of truth).  This file holds what the probes share and the helper
 * family's classification (on_entry, on_exit, count_exit).
 *
 * Safety on lock paths: only per-CPU arrays and a plain array (no hash or
 * stack maps: they take rqspinlocks), no helpers that take locks, and a
 * per-CPU nesting guard so a program can never recurse into itself without
 * bound.  Counters are bumped with atomic adds: a nested program on the same
 * CPU (IRQ, preemption) must not lose an increment.
 */
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf.h>

#define F_CREATE 1ULL
#define N_FRAMES 8       /* slots for entered, not yet returned calls per CPU */
#define MAX_NEST 4       /* guard: deeper nesting of lstrace programs is skipped */
/* STACK_DEPTH (stack frames read on lock failures) and N_EVENTS (recent failure
 * events kept per CPU) come from lstrace/decode.py as -D defines. */
#define LCB_F_SPIN 1

/* struct counters (lstrace/layout.py), struct event and struct ring
 * (lstrace/decode.py), and the ROLE_* codes (lstrace/program.py) are generated
 * from Python, which decodes them: program.build puts them here. */
/* @GENERATED@ */
BPF_PERCPU_ARRAY(counters, struct counters, 1);

/* kprobe mode: an entered, not yet returned call on this CPU. */
struct frame {
	u64 ts;         /* entry time or stamp_of order; 0 = free slot */
	u64 arg;        /* get: flags */
	u32 tid;
	u16 probe;
	u8 role;
	u8 busy;        /* busy counter held at entry (when readable) */
	s32 child_err;  /* get: error of the nested update */
	u32 child_seen;
};

/* Counting mode (fexit only, no entry program): a failing update called by a
 * get helper leaves why it failed here; the enclosing get's fexit, which runs
 * next on this CPU and task, takes it when owner, map and value match and its
 * trampoline frame lies just above the update's (ctx is a stack address: the
 * update ran nested inside this get, on this stack).  Written and read on
 * failure paths only. */
struct pending {
	u64 owner;
	u64 map;
	u64 value;
	u64 sp;         /* the update's fexit ctx; 0 = free */
	u32 tid;
	s32 err;
};
#define N_PENDING 4

/* fentry --latency: a call's entry time, found by its fexit through the
 * trampoline ctx the two share.  Kept in a stack that wraps: calls on one CPU
 * nest, so an exit finds its stamp on top; a stamp whose exit never came (the
 * kernel skipped it as recursion) is overwritten, never waited for. */
struct stamp {
	u64 ts;         /* 0 = free */
	u64 sp;         /* the trampoline ctx */
	u32 probe;
	u32 pad;
};
#define N_STAMPS 8
#define PENDING_MAX_DIST 2048   /* bytes between the two trampoline frames */

struct cpu_state {
	u32 nest;
	u32 pad;
	struct frame f[N_FRAMES];
	u64 lock[4];        /* contention_begin: lock, ts, flags per level */
	u64 lock_ts[4];
	u64 lock_flags[4];
	u32 lock_depth;
	u32 opaque_zero;     /* always 0, unknown to the verifier (frame searches, caller_of) */
	u64 stamp;           /* frame order without a clock (counting mode, kprobe gets) */
	struct stamp st[N_STAMPS];
	u64 st_top;          /* stamps pushed minus popped: the next slot is st_top % N_STAMPS */
	u64 ctx_addr;        /* ctx as a plain number (see sp_of) */
	struct pending pend[N_PENDING];
	u64 pend_head;
};
BPF_PERCPU_ARRAY(state, struct cpu_state, 1);

/* Recent failures, for "top failure sources": comm, stack (BPF program and
 * kernel caller are resolved from kallsyms in user space). */
BPF_PERCPU_ARRAY(events, struct ring, 1);

/* Sorted address ranges of the kernel's rqspinlock users, filled from
 * kallsyms by user space; binary-searched to attribute a lock failure
 * (bpf/probes/rqspinlock.bpf.c).  Declared whatever is planned: the loader
 * fills it while BCC compiles (lstrace/loader.py). */
struct caller_range {
	u64 start;
	u64 end;
	u64 caller;
};
BPF_ARRAY(callers, struct caller_range, N_RANGES);

static __always_inline int guard_enter(struct cpu_state *s, struct counters *c)
{
	/* BCC's clang targets BPF v1/v2: no fetch-and-add return value, so add,
	 * then read; a nested program in between leaves the value as it was. */
	__sync_fetch_and_add(&s->nest, 1);
	if (s->nest > MAX_NEST) {
		__sync_fetch_and_add(&s->nest, -1);
		__sync_fetch_and_add(&c->guard_skips, 1);
		return 0;
	}
	return 1;
}

static __always_inline void guard_exit(struct cpu_state *s)
{
	__sync_fetch_and_add(&s->nest, -1);
}

/* slot 0: v <= 1; slot s: 2^(s-1) < v <= 2^s (upper bound = Prometheus le) */
static __always_inline u64 log2_slot(u64 v)
{
	if (v <= 1)
		return 0;
	return bpf_log2l(v - 1);    /* BCC: floor(log2(x)) + 1, i.e. bit length */
}

/* Count `ns` in a log2 histogram.  u64 index and a compiler barrier keep the
 * bounds check on the register that is used (6.1's verifier needs that). */
static __always_inline void hist_add(u64 *slots, u64 ns)
{
	u64 slot = log2_slot(ns);
	asm volatile("" : "+r"(slot));
	if (slot >= N_SLOTS)
		slot = N_SLOTS - 1;
	asm volatile("" : "+r"(slot));
	if (slot < N_SLOTS)
		__sync_fetch_and_add(&slots[slot], 1);
}

/* OUTCOME_CASES: layout.ERRNO_OUTCOMES, generated by lstrace/program.py */
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
	return v < 0 && v >= -4095;
}

/* Read a per-CPU kernel variable of this CPU, given its address and the
 * address of __per_cpu_offset (both from kallsyms, when it has data). */
static __always_inline u64 percpu_addr(u64 var, u64 offsets)
{
	u64 off = 0;
	u32 cpu = bpf_get_smp_processor_id();
	bpf_probe_read_kernel(&off, sizeof(off), (void *)(offsets + 8 * (u64)cpu));
	return off ? var + off : 0;
}

static __always_inline u32 busy_now(u64 var)
{
	u32 v = 0;
	if (var && PCPU_OFFSETS) {
		u64 a = percpu_addr(var, PCPU_OFFSETS);
		if (a)
			bpf_probe_read_kernel(&v, sizeof(v), (void *)a);
	}
	return v;
}

/* Frames live in N_FRAMES slots, not a stack: a call whose exit never comes
 * (a bpf() syscall that slept and migrated, an exit program the kernel
 * skipped as recursion) must not block the CPU's later calls.  A new frame
 * takes a free slot (ts 0), else the oldest one.  Searches keep the index they
 * found as i + opaque_zero, a value the verifier cannot know: it then tracks
 * one range instead of one state per path (constant indices made 6.12's
 * verifier walk up to 964k insns per exit program). */
/* Slot idx, bounds-checked on the register that is used (u64 and a compiler
 * barrier, as in hist_add: else clang may check one copy and index with another). */
static __always_inline struct frame *frame_at(struct cpu_state *s, u32 idx)
{
	u64 i = idx;
	asm volatile("" : "+r"(i));
	if (i >= N_FRAMES)
		return 0;
	return &s->f[i];
}

static __always_inline struct frame *push_frame(struct cpu_state *s)
{
	u64 oldest = ~0ULL;
	u32 idx = N_FRAMES;
#pragma unroll
	for (int i = 0; i < N_FRAMES; i++) {
		if (s->f[i].ts < oldest) {
			oldest = s->f[i].ts;
			idx = i + s->opaque_zero;
		}
	}
	return frame_at(s, idx);
}

/* A frame's stamp: the entry time with a clock (latency), else a per-CPU
 * sequence that only orders frames (oldest slot reused first). */
static __always_inline u64 stamp_of(struct cpu_state *s, int clock)
{
	if (clock)
		return bpf_ktime_get_ns();
	__sync_fetch_and_add(&s->stamp, 1);
	return s->stamp;
}

/* A trampoline ctx's address as a number: the verifier refuses arithmetic on
 * the ctx pointer, but a value read back from map memory is a plain scalar
 * (storing the pointer there needs CAP_PERFMON, which lstrace has).  fentry
 * and fexit programs of one call share one trampoline frame, so one ctx. */
static __always_inline u64 sp_of(struct cpu_state *s, void *ctx)
{
	s->ctx_addr = (u64)ctx;
	return *(volatile u64 *)&s->ctx_addr;
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

/* kprobe mode: find this call's frame (the newest of this probe and task),
 * copy it out and free it.  Newer frames of the same task are calls nested in
 * this one whose exit program the kernel skipped (that program was already
 * running on this CPU, e.g. an IRQ nested in our own kretprobe): free them
 * too. */
static __always_inline int take_frame(struct cpu_state *s, u32 probe, u32 tid,
				      struct frame *out)
{
	u64 newest = 0;
	u32 idx = N_FRAMES;
#pragma unroll
	for (int i = 0; i < N_FRAMES; i++) {
		if (s->f[i].ts > newest && s->f[i].probe == probe && s->f[i].tid == tid) {
			newest = s->f[i].ts;
			idx = i + s->opaque_zero;   /* see push_frame */
		}
	}
	struct frame *f = frame_at(s, idx);
	if (!f)
		return 0;
	*out = *f;
#pragma unroll
	for (int i = 0; i < N_FRAMES; i++) {
		if (s->f[i].tid == tid && s->f[i].ts >= newest)
			s->f[i].ts = 0;
	}
	return 1;
}

/* The newest open get of this task: the get an update is nested in. */
static __always_inline void tell_parent_get(struct cpu_state *s, u32 tid, s64 ret)
{
	u64 newest = 0;
	u32 idx = N_FRAMES;
#pragma unroll
	for (int i = 0; i < N_FRAMES; i++) {
		if (s->f[i].ts > newest && s->f[i].tid == tid && s->f[i].role == ROLE_GET) {
			newest = s->f[i].ts;
			idx = i + s->opaque_zero;   /* see push_frame */
		}
	}
	struct frame *f = frame_at(s, idx);
	if (f) {
		f->child_seen = 1;
		f->child_err = is_err(ret) ? ret : 0;
	}
}

static __always_inline void record_event(void *ctx, u32 what, u32 outcome)
{
	u32 zero = 0;
	struct ring *r = events.lookup(&zero);
	if (!r)
		return;
	__sync_fetch_and_add(&r->head, 1);
	u64 seq = r->head;
	struct event *e = &r->ev[(seq - 1) % N_EVENTS];
	e->seq = seq;
	e->ts = bpf_ktime_get_ns();
	e->what = what;
	e->outcome = outcome;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_get_stack(ctx, e->ips, sizeof(e->ips), 0);
}

/* ret_kind: 0 ptr_or_null, 1 errno, 2 err_ptr, 3 err_ptr_or_null, 4 void */
#define FLAGS_UNKNOWN (~0ULL)   /* kretprobes do not see arguments */

/* kprobe mode's exit: a kretprobe sees no arguments, a get's flags come from
 * its frame. */
static __always_inline int on_exit(void *ctx, u32 probe, u32 ret_kind, s64 ret, u32 create_null,
				   int use_frame, int clock)
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

	if (ret_kind == 0) {                       /* get helpers: NULL = failed */
		u64 flags = have ? f.arg : FLAGS_UNKNOWN;
		if (ret == 0) {
			if (flags == FLAGS_UNKNOWN)
				out = OUT_NOT_FOUND;       /* kretprobe without its frame */
			else if (flags & ~F_CREATE)
				out = OUT_OTHER;           /* invalid flags */
			else if (!(flags & F_CREATE))
				/* a lookup calls no update: a child_seen here came from
				 * another get's update (an IRQ program whose get entry the
				 * kernel skipped), never from this call */
				out = have && f.busy ? OUT_BUSY : OUT_NOT_FOUND;
			else if (have && f.child_seen)
				out = f.child_err ? outcome_of_err(f.child_err) : OUT_OTHER;
			else
				out = create_null;         /* no update tried: busy (gen A/B) */
		}
	} else if (ret_kind == 1) {
		out = outcome_of_err(ret);
	} else if (ret_kind == 2) {
		out = is_err(ret) ? outcome_of_err(ret) : OUT_OK;
	} else if (ret_kind == 3) {
		out = ret == 0 ? OUT_NOT_FOUND : (is_err(ret) ? outcome_of_err(ret) : OUT_OK);
	}
	if (out >= N_OUTCOMES)
		out = OUT_OTHER;
	if (probe < N_PROBES) {
		__sync_fetch_and_add(&c->helper[probe][out], 1);
		if (clock && have && f.ts)
			hist_add(c->lat[probe], bpf_ktime_get_ns() - f.ts);
	}
	/* A failing update nested in a get: tell the get why it returns NULL
	 * (a successful update makes the get return non-NULL: nothing to say). */
	if (ret_kind == 2 && is_err(ret))
		tell_parent_get(s, tid, ret);
	if (out != OUT_OK && out != OUT_NOT_FOUND && guard_enter(s, c)) {
		record_event(ctx, probe, out);
		guard_exit(s);
	}
	return 0;
}

/* ---- fentry mode.  Counting (the default): one fexit program per helper, no
 * entry program, no frame, no clock.  The success path is one lookup, one
 * classification and one atomic add; the kernel's per-program recursion
 * check on trampolines bounds nesting, and the failure path (which calls
 * helpers) takes lstrace's guard.  --latency adds an entry program that only
 * stamps a frame (clock, trampoline ctx, probe): the fexit classifies exactly
 * as in counting mode, then times the call from its frame. */

static __always_inline struct stamp *stamp_at(struct cpu_state *s, u64 idx)
{
	u64 i = idx;
	asm volatile("" : "+r"(i));     /* as frame_at */
	if (i >= N_STAMPS)
		return 0;
	return &s->st[i];
}

/* Plain load and store, no atomic: a program nested in between pushes above
 * this slot and pops its own (or, if its exit was skipped, leaves a stale
 * stamp that this push overwrites). */
static __always_inline int stamp_entry(void *ctx, u32 probe)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	if (!s)
		return 0;
	u64 sp = sp_of(s, ctx), t = s->st_top;
	s->st_top = t + 1;
	asm volatile("" ::: "memory");    /* claim the slot before writing it */
	struct stamp *st = stamp_at(s, t % N_STAMPS);
	if (st) {
		st->ts = bpf_ktime_get_ns();
		st->sp = sp;
		st->probe = probe;
	}
	return 0;
}

/* This call's stamp: on top of the stack, else searched (the newest match: an
 * older one with the same ctx is a stale stamp).  Returns its time, freed; 0
 * if there is none (its entry program was skipped). */
static __always_inline u64 take_stamp(struct cpu_state *s, u32 probe, u64 sp)
{
	u64 t = s->st_top - 1, ts;
	struct stamp *st = stamp_at(s, t % N_STAMPS);
	if (st && st->ts && st->sp == sp && st->probe == probe) {
		ts = st->ts;
		st->ts = 0;
		s->st_top = t;
		return ts;
	}
	u64 newest = 0;
	u32 idx = N_STAMPS;
#pragma unroll
	for (int i = 0; i < N_STAMPS; i++) {
		if (s->st[i].ts > newest && s->st[i].sp == sp && s->st[i].probe == probe) {
			newest = s->st[i].ts;
			idx = i + s->opaque_zero;   /* see push_frame */
		}
	}
	st = stamp_at(s, idx);
	if (!st)
		return 0;
	st->ts = 0;
	return newest;
}

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
		asm volatile("" : "+r"(i));
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

/* ret_kind as in on_exit; for updates (ret_kind 2) owner/map/value/flags are
 * the update's arguments, for gets the get's (map, owner, value, flags). */
static __always_inline int count_exit(void *ctx, u32 probe, u32 ret_kind, s64 ret, u32 create_null,
				      u64 flags, u64 owner, u64 map, u64 value, u64 busy_var, int clock)
{
	u32 zero = 0;
	struct counters *c = counters.lookup(&zero);
	if (!c)
		return 0;
	u32 out = OUT_OK;
	if (ret_kind == 1)
		out = outcome_of_err(ret);
	else if (ret_kind == 2)
		out = is_err(ret) ? outcome_of_err(ret) : OUT_OK;
	else if (ret_kind == 3)
		out = ret == 0 ? OUT_NOT_FOUND : (is_err(ret) ? outcome_of_err(ret) : OUT_OK);
	if (clock)
		time_exit(ctx, c, probe);
	if ((ret_kind != 0 && out == OUT_OK) || (ret_kind == 0 && ret != 0)) {
		if (probe < N_PROBES)                  /* the hot path ends here */
			__sync_fetch_and_add(&c->helper[probe][OUT_OK], 1);
		return 0;
	}
	struct cpu_state *s = state.lookup(&zero);
	if (!s || !guard_enter(s, c))
		return 0;
	if (ret_kind == 0)
		out = get_null_outcome(ctx, s, flags, owner, map, value, create_null, busy_var);
	if (out >= N_OUTCOMES)
		out = OUT_OTHER;
	if (probe < N_PROBES)
		__sync_fetch_and_add(&c->helper[probe][out], 1);
	/* a get's update (BPF_NOEXIST) failed: leave why for the get */
	if (ret_kind == 2 && flags == 1 && is_err(ret))
		put_pending(s, sp_of(s, ctx), bpf_get_current_pid_tgid(), owner, map, value, ret);
	if (out != OUT_OK && out != OUT_NOT_FOUND)
		record_event(ctx, probe, out);
	guard_exit(s);
	return 0;
}
