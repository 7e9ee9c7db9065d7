/* SPDX-License-Identifier: GPL-2.0 */
/* The helper-overhead workload: one BPF_PROG_TEST_RUN of `calls` makes
 * ctx->args[0] calls of bpf_task_storage_get(F_CREATE) on the current task
 * (the first creates the storage, the rest find it).  No vmlinux.h: the
 * uapi header and libbpf's helper declarations are enough, so clang compiles
 * it in a second even inside a TCG guest. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} store SEC(".maps");

static long call_get(__u32 i, void *unused)
{
	bpf_task_storage_get(&store, bpf_get_current_task_btf(), 0,
			     BPF_LOCAL_STORAGE_GET_F_CREATE);
	return 0;
}

SEC("raw_tp")
int calls(struct bpf_raw_tracepoint_args *ctx)
{
	return bpf_loop(ctx->args[0], call_get, 0, 0) < 0;
}

char LICENSE[] SEC("license") = "GPL";
