// SPDX-License-Identifier: GPL-2.0
/* task-busy on generation A (5.13-6.1): there bpf_task_storage_get() returns
 * NULL *before* looking up while this CPU's busy counter is held, so a NULL
 * lookup can be a busy failure too.  The irq program reads the counter just
 * before its lookup (as the kernel selftest read_bpf_task_storage_busy.c
 * does) to tell the two apart.  Needs kallsyms with per-CPU data symbols
 * (the typed ksym); the Python side falls back to busy_task.bpf.c without. */
#define STORAGE_MAP_TYPE BPF_MAP_TYPE_TASK_STORAGE
#define OWNER(task) (task)
#define storage_get bpf_task_storage_get
#define storage_delete bpf_task_storage_delete
#define LOOKUP_BUSY_VAR bpf_task_storage_busy
#include "busy.h"

char LICENSE[] SEC("license") = "GPL";
