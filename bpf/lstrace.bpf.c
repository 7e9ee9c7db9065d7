// SPDX-License-Identifier: GPL-2.0
/* lstrace: per-CPU health counters for BPF local storage and rqspinlocks.
 *
 * BCC C.  Compiled by lstrace/program.py, which appends the probe glue for
 * the running kernel (fentry/fexit or kprobe/kretprobe per function, with
 * prototypes read from BTF) and passes every dimension and kernel offset as
 * -D defines (lstrace/layout.py is the single source of truth).
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

struct counters {
	u64 helper[N_PROBES][N_OUTCOMES];
	u64 lat[N_PROBES][N_SLOTS];
	u64 rq[N_RQ_ERRNO][N_RQ_KIND][N_CALLER];
	u64 rq_wait[N_SLOTS];
	u64 sys[N_CMD][N_MAPTYPE][N_SYSERR];
	u64 busy_samples;
	u64 busy_held[N_BUSY];
	u64 guard_skips;
};
BPF_PERCPU_ARRAY(counters, struct counters, 1);

/* An entered, not yet returned call on this CPU. */
struct frame {
	u64 ts;         /* entry time; 0 = free slot */
	u64 arg;        /* get: flags; syscall: cmd */
	u32 tid;
	u16 probe;
	u8 role;
	u8 busy;        /* busy counter held at entry (when readable) */
	s32 child_err;  /* get: error of the nested update; syscall: map type */
	u32 child_seen;
};
#define ROLE_NONE 0
#define ROLE_GET 1
#define ROLE_DELETE 2
#define ROLE_UPDATE 3

struct cpu_state {
	u32 nest;
	u32 pad;
	struct frame f[N_FRAMES];
	u64 lock[4];        /* contention_begin: lock, ts, flags per level */
	u64 lock_ts[4];
	u64 lock_flags[4];
	u32 lock_depth;
	u32 opaque_zero;     /* always 0, unknown to the verifier (frame searches, caller_of) */
};
BPF_PERCPU_ARRAY(state, struct cpu_state, 1);

/* Recent failures, for "top failure sources": comm, stack (BPF program and
 * kernel caller are resolved from kallsyms in user space). */
struct event {
	u64 seq;
	u64 ts;
	u32 what;       /* probe index, or N_PROBES + errno index for rqspinlock */
	u32 outcome;
	char comm[16];
	u64 ips[STACK_DEPTH];
};
struct ring {
	u64 head;
	struct event ev[N_EVENTS];
};
BPF_PERCPU_ARRAY(events, struct ring, 1);

/* Sorted address ranges of the kernel's rqspinlock users, filled from
 * kallsyms by user space; binary-searched to attribute a lock failure. */
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

static __always_inline u32 outcome_of_err(s64 err)
{
	switch (-err) {
	case 0: return OUT_OK;
	case 16: return OUT_BUSY;        /* EBUSY */
	case 35: return OUT_DEADLOCK;    /* EDEADLK */
	case 110: return OUT_TIMEOUT;    /* ETIMEDOUT */
	case 12: return OUT_NOMEM;       /* ENOMEM */
	case 2: return OUT_NOT_FOUND;    /* ENOENT */
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

static __always_inline int on_entry(u32 probe, u8 role, u64 arg, u64 busy_var)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	struct counters *c = counters.lookup(&zero);
	if (!s || !c || !guard_enter(s, c))
		return 0;
	struct frame *f = push_frame(s);
	if (f) {
		f->ts = bpf_ktime_get_ns();     /* first: claims the slot */
		f->probe = probe;
		f->role = role;
		f->tid = bpf_get_current_pid_tgid();
		f->arg = arg;
		f->busy = busy_now(busy_var) ? 1 : 0;
		f->child_err = 0;
		f->child_seen = 0;
	}
	guard_exit(s);
	return 0;
}

/* Find this call's frame (the newest of this probe and task), copy it out and
 * free it.  Newer frames of the same task are calls nested in this one whose
 * exit program the kernel skipped (that program was already running on this
 * CPU, e.g. an IRQ nested in our own fexit): free them too. */
static __always_inline int take_frame(struct cpu_state *s, u32 probe, u32 tid, struct frame *out)
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

/* exit_flags: a get's flags as the exit program sees them (fexit has every
 * argument), so a call whose entry program the kernel skipped is still
 * classified; FLAGS_UNKNOWN from kretprobes, which need the frame. */
static __always_inline int on_exit(void *ctx, u32 probe, u32 ret_kind, s64 ret, u32 create_null,
				   u64 exit_flags)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	struct counters *c = counters.lookup(&zero);
	if (!s || !c || !guard_enter(s, c))
		return 0;
	struct frame f = {};
	u32 tid = bpf_get_current_pid_tgid();
	int have = take_frame(s, probe, tid, &f);
	u32 out = OUT_OK;

	if (ret_kind == 0) {                       /* get helpers: NULL = failed */
		u64 flags = have ? f.arg : exit_flags;
		if (ret == 0) {
			if (flags == FLAGS_UNKNOWN)
				out = OUT_NOT_FOUND;       /* kretprobe without its frame */
			else if (flags & ~F_CREATE)
				out = OUT_OTHER;           /* invalid flags */
			else if (have && f.child_seen)
				out = f.child_err ? outcome_of_err(f.child_err) : OUT_OTHER;
			else if (flags & F_CREATE)
				out = create_null;         /* no update tried: busy (gen A/B) */
			else if (have && f.busy)
				out = OUT_BUSY;
			else
				out = OUT_NOT_FOUND;
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
		if (have && f.ts)
			hist_add(c->lat[probe], bpf_ktime_get_ns() - f.ts);
	}
	/* An update nested in a get: tell the get why it returns NULL. */
	if (ret_kind == 2)
		tell_parent_get(s, tid, ret);
	if (out != OUT_OK && out != OUT_NOT_FOUND)
		record_event(ctx, probe, out);
	guard_exit(s);
	return 0;
}

#if WITH_RQSPINLOCK
/* ---- rqspinlock failures at lock:contention_begin/end (raw tracepoints,
 * which unlike perf-based tracepoints also run inside bpf() map syscalls) */

int lst_contention_begin(struct bpf_raw_tracepoint_args *ctx)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	if (!s)
		return 0;
	__sync_fetch_and_add(&s->lock_depth, 1);
	u32 d = s->lock_depth - 1;
	if (d < 4) {
		s->lock[d] = ctx->args[0];
		s->lock_flags[d] = ctx->args[1];
		s->lock_ts[d] = bpf_ktime_get_ns();
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

/* Was the failing lock already held by this CPU (AA)?  Needs the per-CPU
 * rqspinlock_held_locks table; else the kind is "unknown". */
static __always_inline u32 lock_kind(u64 lock)
{
	if (!HELD_LOCKS || !PCPU_OFFSETS)
		return KIND_UNKNOWN;
	u64 a = percpu_addr(HELD_LOCKS, PCPU_OFFSETS);
	if (!a)
		return KIND_UNKNOWN;
	int cnt = 0;
	u64 locks[31] = {};
	bpf_probe_read_kernel(&cnt, sizeof(cnt), (void *)a);
	bpf_probe_read_kernel(locks, sizeof(locks), (void *)(a + 8));
	if (cnt > 31)
		cnt = 31;
#pragma unroll
	for (int i = 0; i < 30; i++) {
		if (i < cnt - 1 && locks[i] == lock)
			return KIND_AA;
	}
	return KIND_ABBA;
}

int lst_contention_end(struct bpf_raw_tracepoint_args *ctx)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	struct counters *c = counters.lookup(&zero);
	if (!s || !c || !guard_enter(s, c))
		return 0;
	u64 lock = ctx->args[0];
	int ret = (int)ctx->args[1];
	u64 ts = 0, flags = 0;
	u32 d = s->lock_depth;
	int found = -1;
#pragma unroll
	for (int i = 3; i >= 0; i--) {
		if (found < 0 && i < d && s->lock[i] == lock)
			found = i;
	}
	if (found >= 0 && found < 4) {
		ts = s->lock_ts[found];
		flags = s->lock_flags[found];
		s->lock[found] = 0;
#pragma unroll
		for (int i = 3; i >= 0; i--) {
			if (i == s->lock_depth - 1 && s->lock[i] == 0)
				__sync_fetch_and_add(&s->lock_depth, -1);
		}
	}
	if (!(flags & LCB_F_SPIN) && ret == 0)
		goto out;
	/* Only rqspinlock fails; a failed mutex (ww_mutex -EDEADLK) is not ours. */
	if (ret != 0 && !(flags & LCB_F_SPIN) && found >= 0)
		goto out;
	u64 ips[STACK_DEPTH] = {};
	bpf_get_stack(ctx, ips, sizeof(ips), 0);
	int is_rq = ret != 0;
	u64 ip0 = 0, ip1 = 0;   /* the first two frames past the slow path */
#pragma unroll
	for (int i = 0; i < STACK_DEPTH; i++) {
		if (ips[i] >= RQ_SLOWPATH_START && ips[i] < RQ_SLOWPATH_END) {
			is_rq = 1;
			ip0 = ip1 = 0;
		} else if (!ip0) {
			ip0 = ips[i];
		} else if (!ip1) {
			ip1 = ips[i];
		}
	}
	if (!is_rq)
		goto out;
	/* binary searches outside the loop: inside it, 7.x's verifier walks
	 * every combination of branches and gives up (E2BIG at 1M insns) */
	u64 caller = caller_of(ip0, s->opaque_zero);
	if (caller == N_CALLER && ip1)
		caller = caller_of(ip1, s->opaque_zero);
	if (caller >= N_CALLER)
		caller = N_CALLER - 1;          /* "other" */
	if (ts)
		hist_add(c->rq_wait, bpf_ktime_get_ns() - ts);
	if (ret == -35 || ret == -110) {
		u32 e = ret == -35 ? 0 : 1;
		u32 kind = lock_kind(lock);
		if (kind < N_RQ_KIND)
			__sync_fetch_and_add(&c->rq[e][kind][caller], 1);
		record_event(ctx, N_PROBES + e, e ? OUT_TIMEOUT : OUT_DEADLOCK);
	}
out:
	guard_exit(s);
	return 0;
}

#endif /* WITH_RQSPINLOCK */

#if WITH_BPF_SYSCALL
/* ---- bpf() errors by command, map type and errno */

static __always_inline u32 cmd_index(u32 cmd)
{
	switch (cmd) {
	CMD_CASES
	}
	return N_CMD - 1;
}

static __always_inline u32 sys_errno_index(s64 err)
{
	switch (-err) {
	SYSERR_CASES
	}
	return N_SYSERR - 1;
}

static __always_inline u32 map_type_of_fd(u32 fd)
{
	u64 task = bpf_get_current_task(), files = 0, fdt = 0, fdarr = 0, file = 0, map = 0;
	u32 max_fds = 0, type = 0;
	bpf_probe_read_kernel(&files, 8, (void *)(task + OFF_TASK_FILES));
	if (!files)
		return 0;
	bpf_probe_read_kernel(&fdt, 8, (void *)(files + OFF_FILES_FDT));
	if (!fdt)
		return 0;
	bpf_probe_read_kernel(&max_fds, 4, (void *)(fdt + OFF_FDT_MAX_FDS));
	if (fd >= max_fds)
		return 0;
	bpf_probe_read_kernel(&fdarr, 8, (void *)(fdt + OFF_FDT_FD));
	bpf_probe_read_kernel(&file, 8, (void *)(fdarr + 8 * (u64)fd));
	if (!file)
		return 0;
	bpf_probe_read_kernel(&map, 8, (void *)(file + OFF_FILE_PRIVATE));
	if (!map)
		return 0;
	bpf_probe_read_kernel(&type, 4, (void *)(map + OFF_MAP_TYPE));
	return type;
}

static __always_inline u32 map_bucket(u32 type)
{
	switch (type) {
	MAPTYPE_CASES
	}
	return N_MAPTYPE - 1;
}

TRACEPOINT_PROBE(syscalls, sys_enter_bpf)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	struct counters *c = counters.lookup(&zero);
	if (!s || !c || !guard_enter(s, c))
		return 0;
	u32 cmd = args->cmd;
	u32 mt = 0;     /* bucket 0: "none" */
	if (IS_MAP_ELEM_CMD(cmd)) {
		u32 fd = 0;
		bpf_probe_read_user(&fd, sizeof(fd), (void *)args->uattr);
		mt = map_bucket(map_type_of_fd(fd));
	}
	struct frame *f = push_frame(s);
	if (f) {
		f->ts = bpf_ktime_get_ns();
		f->probe = SYSCALL_FRAME;
		f->role = ROLE_NONE;
		f->tid = bpf_get_current_pid_tgid();
		f->arg = cmd;
		f->child_err = mt;
	}
	guard_exit(s);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_bpf)
{
	u32 zero = 0;
	struct cpu_state *s = state.lookup(&zero);
	struct counters *c = counters.lookup(&zero);
	if (!s || !c || !guard_enter(s, c))
		return 0;
	struct frame f = {};
	s64 ret = args->ret;
	if (take_frame(s, SYSCALL_FRAME, bpf_get_current_pid_tgid(), &f) && ret < 0) {
		u32 ci = cmd_index(f.arg), mi = f.child_err, ei = sys_errno_index(ret);
		if (ci < N_CMD && mi < N_MAPTYPE && ei < N_SYSERR)
			__sync_fetch_and_add(&c->sys[ci][mi][ei], 1);
	}
	guard_exit(s);
	return 0;
}

#endif /* WITH_BPF_SYSCALL */

#if WITH_BUSY_SAMPLER
/* ---- busy counters sampled at the timer tick (raw tracepoint: runs even
 * while a bpf() map syscall holds the counter) */
int lst_busy_sample(struct bpf_raw_tracepoint_args *ctx)
{
	u32 zero = 0;
	struct counters *c = counters.lookup(&zero);
	if (!c)
		return 0;
	__sync_fetch_and_add(&c->busy_samples, 1);
	if (busy_now(BUSY_TASK))
		__sync_fetch_and_add(&c->busy_held[0], 1);
	if (busy_now(BUSY_CGRP))
		__sync_fetch_and_add(&c->busy_held[1], 1);
	return 0;
}
#endif /* WITH_BUSY_SAMPLER */
