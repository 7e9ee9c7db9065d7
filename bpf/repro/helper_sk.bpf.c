// SPDX-License-Identifier: GPL-2.0
/* helper-calls, socket storage: a tc program test-run with repeat =
 * n + deletes on the socket BPF_PROG_TEST_RUN allocates for its skb (fresh
 * per test run, so no storage yet). Run i (a per-CPU counter) does one call:
 * i < nulls: bpf_sk_storage_get without F_CREATE -> NULL; i < n: with
 * F_CREATE -> ok; then bpf_sk_storage_delete (first ok, rest -ENOENT).
 * One call per run keeps the verifier happy (the socket pointer cannot be
 * handed to a bpf_loop callback). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"

enum { G_GET, G_DELETE };

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, __u64);
} skstore SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} iter SEC(".maps");

SEC("tc")
int sk_calls(struct __sk_buff *skb)
{
	struct cfg *c = get_cfg();
	struct bpf_sock *sk = skb->sk;
	__u32 zero = 0;
	__u64 *i = bpf_map_lookup_elem(&iter, &zero), flags;

	if (!c || !i || !sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 2;
	if (*i < c->n) {
		flags = *i < c->nulls ? 0 : F_CREATE;
		count_get(G_GET, bpf_sk_storage_get(&skstore, sk, 0, flags), flags);
	} else if (*i < c->n + c->deletes) {
		count_ret(G_DELETE, bpf_sk_storage_delete(&skstore, sk));
	}
	*i += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
