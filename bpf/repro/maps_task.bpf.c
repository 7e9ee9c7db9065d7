// SPDX-License-Identifier: GPL-2.0
/* syscall-errors: maps only (no programs); Python drives bpf() on them. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, __u64);
} task_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, int);
	__type(value, __u64);
} hash_map SEC(".maps");

char LICENSE[] SEC("license") = "GPL";
