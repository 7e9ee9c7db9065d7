/* SPDX-License-Identifier: GPL-2.0 */
/* What the nesting cases share (htab, recursion, storage_deadlock): a per-CPU
 * flag that is 1 while the outer call runs (the nested program acts only then,
 * once), and the test for "our process, while Python drives the case". */
#ifndef LSTRACE_REPRO_NEST_H
#define LSTRACE_REPRO_NEST_H
#include "repro.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} inside SEC(".maps");

static __always_inline __u32 *inside_flag(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&inside, &zero);
}

static __always_inline int ours(void)
{
	struct cfg *c = get_cfg();

	/* arg4 = armed: only while Python drives the case */
	return c && c->arg4 && bpf_get_current_pid_tgid() >> 32 == c->tgid;
}

#endif
