// SPDX-License-Identifier: GPL-2.0
/* task-busy: spurious busy failures of task local storage (generations A/B);
 * the programs are in busy.h. */
#define STORAGE_MAP_TYPE BPF_MAP_TYPE_TASK_STORAGE
#define OWNER(task) (task)
#define storage_get bpf_task_storage_get
#define storage_delete bpf_task_storage_delete
#include "busy.h"

char LICENSE[] SEC("license") = "GPL";
