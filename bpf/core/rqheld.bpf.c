// SPDX-License-Identifier: GPL-2.0
/* lstrace core: what every counter of rqspinlock failures reads of the kernel
 * to decide a failure's kind (lstrace/probes/rqspinlock_kernel.py emits the
 * addresses and the layouts: HELD_LOCKS and RQ_HELD_* from kallsyms and BTF,
 * PREEMPT_COUNT_VAR / TASK_PREEMPT_OFF and NMI_MASK for the NMI test). */

/* Is `lock` (or, with hi > lo, any lock in [lo, hi)) in this CPU's
 * rqspinlock_held_locks table?  1 yes, 0 no, -1 the table cannot be read.
 * `skip_top`: at lock:contention_end the top entry is the failing attempt
 * itself; at a lock user's return it is already popped. */
static __always_inline int held_by_this_cpu(u64 lock, u64 lo, u64 hi, int skip_top)
{
	if (!HELD_LOCKS || !PCPU_OFFSETS)
		return -1;
	u64 a = percpu_addr(HELD_LOCKS, PCPU_OFFSETS);
	if (!a)
		return -1;
	int cnt = 0;
	u64 locks[RQ_NR_HELD] = {};
	bpf_probe_read_kernel(&cnt, sizeof(cnt), (void *)(a + RQ_HELD_CNT_OFF));
	bpf_probe_read_kernel(locks, sizeof(locks), (void *)(a + RQ_HELD_LOCKS_OFF));
	if (cnt > RQ_NR_HELD)
		cnt = RQ_NR_HELD;
	int n = skip_top ? cnt - 1 : cnt;
#pragma unroll
	for (int i = 0; i < RQ_NR_HELD; i++) {
		if (i < n && (locks[i] == lock || (locks[i] >= lo && locks[i] < hi)))
			return 1;
	}
	return 0;
}

/* In NMI context now?  preempt_count's NMI bits: x86 keeps the count in the
 * per-CPU __preempt_count, arm64 in current->thread_info; 0 where neither is
 * known (the kind then never says nmi: doctor says so). */
static __always_inline int in_nmi_now(void)
{
	u32 pc = 0;
	if (PREEMPT_COUNT_VAR != 0 && PCPU_OFFSETS != 0) {
		u64 a = percpu_addr(PREEMPT_COUNT_VAR, PCPU_OFFSETS);
		if (a)
			bpf_probe_read_kernel(&pc, sizeof(pc), (void *)a);
	} else if (TASK_PREEMPT_OFF) {
		u64 t = bpf_get_current_task();
		bpf_probe_read_kernel(&pc, sizeof(pc), (void *)(t + TASK_PREEMPT_OFF));
	}
	return (pc & NMI_MASK) != 0;
}

/* The kind of a failure with errno index `e` of `lock` (0: the failing lock is
 * not known here): nmi in NMI context, timeout, AA (this CPU holds the lock),
 * ABBA (it does not: another CPU holds it and waits for one of ours), unknown. */
static __always_inline u32 rq_kind(u64 lock, u32 e, int skip_top)
{
	if (in_nmi_now())
		return KIND_NMI;
	if (e == RQ_E_ETIMEDOUT)
		return KIND_TIMEOUT;
	if (!lock)
		return KIND_UNKNOWN;
	int held = held_by_this_cpu(lock, 0, 0, skip_top);
	return held < 0 ? KIND_UNKNOWN : (held ? KIND_AA : KIND_ABBA);
}
