// SPDX-License-Identifier: GPL-2.0
/* lstrace core: one failure event into this CPU's ring (what: a probe index,
 * or N_PROBES + an rqspinlock errno index; lstrace/decode.py reads it). */
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
