// SPDX-License-Identifier: GPL-2.0
/* helper-calls, task storage: a test-run raw_tp program on the calling
 * (pinned) thread calls bpf_task_storage_get n times (the first `nulls`
 * without F_CREATE on absent storage -> NULL, the rest with F_CREATE -> ok),
 * then bpf_task_storage_delete `deletes` times (first ok, rest -ENOENT). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"

enum { G_GET, G_DELETE };

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, __u64);
} tstore SEC(".maps");

static long get_cb(__u32 i, struct cfg *c)
{
	__u64 flags = i < c->nulls ? 0 : F_CREATE;
	void *p = bpf_task_storage_get(&tstore, bpf_get_current_task_btf(), 0, flags);

	count_get(G_GET, p, flags);
	return 0;
}

static long delete_cb(__u32 i, struct cfg *c)
{
	count_ret(G_DELETE, bpf_task_storage_delete(&tstore, bpf_get_current_task_btf()));
	return 0;
}

SEC("raw_tp")
int task_calls(void *ctx)
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
