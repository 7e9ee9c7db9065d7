// SPDX-License-Identifier: GPL-2.0
/* lstrace probe busy_sampler (lstrace/probes/busy_sampler.py): appended by
 * lstrace/program.py when the probe is planned; uses the core (counters,
 * busy_now).  BUSY_TASK/BUSY_CGRP and BUSY_IDX_* come from Python. */

/* ---- busy counters sampled at the timer tick (raw tracepoint: runs even
 * while a bpf() map syscall holds the counter) */
int lst_busy_sample(struct bpf_raw_tracepoint_args *ctx)
{
	struct counters *c = this_cpu_counters();
	if (!c)
		return 0;
	__sync_fetch_and_add(&c->busy_samples, 1);
	if (busy_now(BUSY_TASK))
		__sync_fetch_and_add(&c->busy_held[BUSY_IDX_TASK], 1);
	if (busy_now(BUSY_CGRP))
		__sync_fetch_and_add(&c->busy_held[BUSY_IDX_CGRP], 1);
	return 0;
}
