// SPDX-License-Identifier: GPL-2.0
/* helper-calls, cgroup storage: helper_task.bpf.c's pattern on the calling
 * thread's cgroup v2 cgroup: bpf_cgrp_storage_get n times (the first `nulls`
 * without F_CREATE -> NULL, the rest with F_CREATE -> ok), then
 * bpf_cgrp_storage_delete `deletes` times (first ok, rest -ENOENT). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"

enum { G_GET, G_DELETE };

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, __u64);
} cstore SEC(".maps");

/* The cgroup v2 cgroup of the calling thread. */
static __always_inline struct cgroup *cur_cgrp(void)
{
	return bpf_get_current_task_btf()->cgroups->dfl_cgrp;
}

static long get_cb(__u32 i, struct cfg *c)
{
	__u64 flags = i < c->nulls ? 0 : F_CREATE;
	void *p = bpf_cgrp_storage_get(&cstore, cur_cgrp(), 0, flags);

	count_get(G_GET, p, flags);
	return 0;
}

static long delete_cb(__u32 i, struct cfg *c)
{
	count_ret(G_DELETE, bpf_cgrp_storage_delete(&cstore, cur_cgrp()));
	return 0;
}

SEC("raw_tp")
int cgrp_calls(void *ctx)
{
	struct cfg *c = get_cfg(), loc;   /* bpf_loop wants a stack context */

	if (!c)
		return 1;
	loc = *c;
	bpf_loop(loc.n, get_cb, &loc, 0);
	bpf_loop(loc.deletes, delete_cb, &loc, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
