// SPDX-License-Identifier: GPL-2.0
/* helper-calls, cgroup storage: on the calling thread's cgroup v2 cgroup;
 * the program is in helper.h. */
#define STORAGE_MAP_TYPE BPF_MAP_TYPE_CGRP_STORAGE
#define CURRENT_OWNER() (bpf_get_current_task_btf()->cgroups->dfl_cgrp)
#define storage_get bpf_cgrp_storage_get
#define storage_delete bpf_cgrp_storage_delete
#define PROG_NAME cgrp_calls
#include "helper.h"

char LICENSE[] SEC("license") = "GPL";
