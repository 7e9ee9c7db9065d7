// SPDX-License-Identifier: GPL-2.0
/* syscall-errors: a cgroup storage map (6.2+), keyed by a cgroup fd. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, __u64);
} cgrp_map SEC(".maps");

char LICENSE[] SEC("license") = "GPL";
