/* SPDX-License-Identifier: GPL-2.0 */
/* The task-storage cases' two maps (recursion, storage_deadlock): the outer
 * and the nested calls use one each. */
#ifndef LSTRACE_REPRO_TASK_MAPS_H
#define LSTRACE_REPRO_TASK_MAPS_H
#include "repro.h"

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, __u64);
} map_a SEC(".maps"), map_b SEC(".maps");

#endif
