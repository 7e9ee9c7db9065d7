// SPDX-License-Identifier: GPL-2.0
/* lstrace core: log2 histograms (lstrace/layout.py slot_of mirrors log2_slot). */

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
