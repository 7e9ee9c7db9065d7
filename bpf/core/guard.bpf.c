// SPDX-License-Identifier: GPL-2.0
/* lstrace core: the per-CPU nesting guard (lstrace programs nested deeper
 * than MAX_NEST on one CPU are skipped and counted in guard_skips). */
#define MAX_NEST 4

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
