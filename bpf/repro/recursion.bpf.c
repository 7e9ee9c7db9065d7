// SPDX-License-Identifier: GPL-2.0
/* recursion: a storage helper called from inside a storage update, in the
 * way of the task_ls_recursion selftest (needs fentry: lab guests only).
 *
 * on_enter  tp_btf/sys_enter of our process while armed: get(b, F_CREATE),
 *           get(a, F_CREATE) (creating a -> bpf_local_storage_update), then
 *           delete(a) so the next syscall creates it again.
 * on_update fentry/bpf_local_storage_update of our process: delete(b) (b
 *           exists) and get(a, F_CREATE) (a is being created).
 * Generation A/B: the nested calls find the busy counter held: -EBUSY and
 * NULL. Generation C: the trampoline refuses to recurse (recursion_misses)
 * and the nested calls meet rqspinlock instead. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"
#include "nest.h"
#include "task_maps.h"

enum { G_ENTER_GET_B, G_ENTER_GET_A, G_ENTER_DELETE_A, G_NESTED_DELETE_B, G_NESTED_GET_A };

SEC("tp_btf/sys_enter")
int on_enter(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();

	if (!ours())
		return 0;
	count_get(G_ENTER_GET_B, bpf_task_storage_get(&map_b, task, 0, F_CREATE), F_CREATE);
	count_get(G_ENTER_GET_A, bpf_task_storage_get(&map_a, task, 0, F_CREATE), F_CREATE);
	count_ret(G_ENTER_DELETE_A, bpf_task_storage_delete(&map_a, task));
	return 0;
}

SEC("fentry/bpf_local_storage_update")
int on_update(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();

	if (!ours())
		return 0;
	count_ret(G_NESTED_DELETE_B, bpf_task_storage_delete(&map_b, task));
	count_get(G_NESTED_GET_A, bpf_task_storage_get(&map_a, task, 0, F_CREATE), F_CREATE);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
