// SPDX-License-Identifier: GPL-2.0
/* task-busy, cgroup flavour (generation B): bpf_cgrp_storage_busy; the
 * programs are in busy.h. */
#define STORAGE_MAP_TYPE BPF_MAP_TYPE_CGRP_STORAGE
#define OWNER(task) ((task)->cgroups->dfl_cgrp)
#define storage_get bpf_cgrp_storage_get
#define storage_delete bpf_cgrp_storage_delete
#include "busy.h"

char LICENSE[] SEC("license") = "GPL";
