// SPDX-License-Identifier: GPL-2.0
/* helper-calls, task storage; the program is in helper.h. */
#define STORAGE_MAP_TYPE BPF_MAP_TYPE_TASK_STORAGE
#define CURRENT_OWNER() bpf_get_current_task_btf()
#define storage_get bpf_task_storage_get
#define storage_delete bpf_task_storage_delete
#define PROG_NAME task_calls
#include "helper.h"

char LICENSE[] SEC("license") = "GPL";
