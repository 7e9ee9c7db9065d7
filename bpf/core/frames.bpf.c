// SPDX-License-Identifier: GPL-2.0
/* lstrace core: slots of this CPU's state (frames of entered calls, stamps of
 * timed calls) and the one slot search they share.
 *
 * Frames live in N_FRAMES slots, not a stack: a call whose exit never comes
 * (a bpf() syscall that slept and migrated, an exit program the kernel
 * skipped as recursion) must not block the CPU's later calls.  A new frame
 * takes a free slot (ts 0), else the oldest one. */

/* The slot search, written once: among arr[0..n) the slot `e` whose e->ts
 * is better (`>`: newest, from 0; `<`: oldest, from ~0) than every other
 * matching `cond`; its ts goes to `best`, its index to `idx` (n: none).  The
 * index is kept as i + opaque_zero, a value the verifier cannot know: it then
 * tracks one range instead of one state per path (constant indices made
 * 6.12's verifier walk up to 964k insns per exit program). */
#define SLOT_SEARCH(s, arr, n, better, init, cond, best, idx)		\
	do {								\
		best = (init);						\
		idx = (n);						\
		_Pragma("unroll")					\
		for (int i_ = 0; i_ < (n); i_++) {			\
			typeof(&(arr)[0]) e = &(arr)[i_];		\
			if (e->ts better best && (cond)) {		\
				best = e->ts;				\
				idx = i_ + (s)->opaque_zero;		\
			}						\
		}							\
	} while (0)

/* Slot idx, bounds-checked on the register that is used (u64 and a compiler
 * barrier, as in hist_add: else clang may check one copy and index with
 * another). */
static __always_inline struct frame *frame_at(struct cpu_state *s, u64 idx)
{
	u64 i = idx;
	asm volatile("" : "+r"(i));
	if (i >= N_FRAMES)
		return 0;
	return &s->f[i];
}

static __always_inline struct stamp *stamp_at(struct cpu_state *s, u64 idx)
{
	u64 i = idx;
	asm volatile("" : "+r"(i));     /* as frame_at */
	if (i >= N_STAMPS)
		return 0;
	return &s->st[i];
}

static __always_inline struct frame *push_frame(struct cpu_state *s)
{
	u64 oldest;
	u32 idx;
	SLOT_SEARCH(s, s->f, N_FRAMES, <, ~0ULL, 1, oldest, idx);
	return frame_at(s, idx);
}

/* kprobe mode: find this call's frame (the newest of this probe and task),
 * copy it out and free it.  Newer frames of the same task are calls nested in
 * this one whose exit program the kernel skipped (that program was already
 * running on this CPU, e.g. an IRQ nested in our own kretprobe): free them
 * too. */
static __always_inline int take_frame(struct cpu_state *s, u32 probe, u32 tid,
				      struct frame *out)
{
	u64 newest;
	u32 idx;
	SLOT_SEARCH(s, s->f, N_FRAMES, >, 0, e->probe == probe && e->tid == tid, newest, idx);
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

/* fentry --latency: stamp a call at entry.  Plain load and store, no atomic:
 * a program nested in between pushes above this slot and pops its own (or,
 * if its exit was skipped, leaves a stale stamp that this push overwrites). */
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
	u64 t = s->st_top - 1, ts, newest;
	u32 idx;
	struct stamp *st = stamp_at(s, t % N_STAMPS);
	if (st && st->ts && st->sp == sp && st->probe == probe) {
		ts = st->ts;
		st->ts = 0;
		s->st_top = t;
		return ts;
	}
	SLOT_SEARCH(s, s->st, N_STAMPS, >, 0, e->sp == sp && e->probe == probe, newest, idx);
	st = stamp_at(s, idx);
	if (!st)
		return 0;
	st->ts = 0;
	return newest;
}
