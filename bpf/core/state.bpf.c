// SPDX-License-Identifier: GPL-2.0
/* lstrace core: the per-CPU state every probe shares (lstrace/program.py
 * assembles it after bpf/lstrace.bpf.c), the events ring and the callers
 * table. */
#define N_FRAMES 8       /* slots for entered, not yet returned calls per CPU */
#define N_PENDING 4
#define N_STAMPS 8
#define N_LOCK_LEVELS 4  /* contention_begin nesting tracked per CPU */

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

struct cpu_state {
	u32 nest;
	u32 pad;
	struct frame f[N_FRAMES];
	u64 lock[N_LOCK_LEVELS];        /* contention_begin: lock, ts, flags per level */
	u64 lock_ts[N_LOCK_LEVELS];
	u64 lock_flags[N_LOCK_LEVELS];
	u32 lock_depth;
	u32 opaque_zero;     /* always 0, unknown to the verifier (slot searches, caller_of) */
	u64 stamp;           /* frame order without a clock (counting mode, kprobe gets) */
	struct stamp st[N_STAMPS];
	u64 st_top;          /* stamps pushed minus popped: the next slot is st_top % N_STAMPS */
	u64 ctx_addr;        /* ctx as a plain number (see sp_of) */
	struct pending pend[N_PENDING];
	u64 pend_head;
	u64 rq_end_lock;     /* the last rqspinlock failure lock:contention_end counted, */
	u32 rq_end_user;     /* its lock user (CALLERS) and task: see counted_at_end */
	u32 rq_end_tid;
};
BPF_PERCPU_ARRAY(state, struct cpu_state, 1);

/* This CPU's counters and state: the one slot of each per-CPU array. */
static __always_inline struct counters *this_cpu_counters(void)
{
	u32 zero = 0;
	return counters.lookup(&zero);
}

static __always_inline struct cpu_state *this_cpu_state(void)
{
	u32 zero = 0;
	return state.lookup(&zero);
}

/* Recent failures, for "top failure sources": comm, stack (BPF program and
 * kernel caller are resolved from kallsyms in user space). */
BPF_PERCPU_ARRAY(events, struct ring, 1);

/* Sorted address ranges of the kernel's rqspinlock users, filled from
 * kallsyms by user space; binary-searched to attribute a lock failure
 * (bpf/probes/rqspinlock.bpf.c).  Declared whatever is planned: the loader
 * fills it while BCC compiles (lstrace/loader/child.py). */
struct caller_range {
	u64 start;
	u64 end;
	u64 caller;
};
BPF_ARRAY(callers, struct caller_range, N_RANGES);
