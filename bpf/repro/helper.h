/* SPDX-License-Identifier: GPL-2.0 */
/* helper-calls body shared by helper_task.bpf.c and helper_cgrp.bpf.c, which
 * define STORAGE_MAP_TYPE, CURRENT_OWNER(), storage_get, storage_delete and
 * PROG_NAME first.  A test-run raw_tp program on the calling (pinned) thread
 * calls get n times (the first `nulls` without F_CREATE on absent storage ->
 * NULL, the rest with F_CREATE -> ok), then delete `deletes` times (first
 * ok, rest -ENOENT). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"

enum { G_GET, G_DELETE };

struct {
	__uint(type, STORAGE_MAP_TYPE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, __u64);
} store SEC(".maps");

static long get_cb(__u32 i, struct cfg *c)
{
	__u64 flags = i < c->nulls ? 0 : F_CREATE;
	void *p = storage_get(&store, CURRENT_OWNER(), 0, flags);

	count_get(G_GET, p, flags);
	return 0;
}

static long delete_cb(__u32 i, struct cfg *c)
{
	count_ret(G_DELETE, storage_delete(&store, CURRENT_OWNER()));
	return 0;
}

SEC("raw_tp")
int PROG_NAME(void *ctx)
{
	struct cfg *c = get_cfg(), loc;   /* bpf_loop wants a stack context */

	if (!c)
		return 1;
	loc = *c;
	bpf_loop(loc.n, get_cb, &loc, 0);
	bpf_loop(loc.deletes, delete_cb, &loc, 0);
	return 0;
}
