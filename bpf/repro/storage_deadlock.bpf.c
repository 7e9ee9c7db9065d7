// SPDX-License-Identifier: GPL-2.0
/* storage-deadlock (7.0+: local storage on rqspinlock): a task-storage delete
 * nested inside a task-storage delete of the same task, on the same CPU,
 * counting its own returns.
 *
 *   on_enter   tp_btf/sys_enter of our process while armed: get(b, F_CREATE)
 *              and get(a, F_CREATE) (both elements exist), then delete(a):
 *              bpf_selem_unlink() unlinks a while it holds the task's
 *              local_storage->lock.
 *   on_unlink_misc / on_unlink  fentry on bpf_selem_unlink_storage_nolock_misc
 *              (7.3: bpf_selem_unlink_storage_nolock is inlined there) or
 *              bpf_selem_unlink_storage_nolock (7.2), both called with that
 *              lock held, once per outer delete on this CPU: delete(b) of the
 *              same task needs the same lock: AA, -EDEADLK (or -ETIMEDOUT).
 * Before 7.0 the busy counters refuse the nested call instead (-EBUSY); the
 * case runs only where local storage takes rqspinlocks. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"
#include "nest.h"
#include "task_maps.h"

enum { G_ENTER_GET_B, G_ENTER_GET_A, G_OUTER_DELETE_A, G_NESTED_DELETE_B };

SEC("tp_btf/sys_enter")
int on_enter(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 *in = inside_flag();

	if (!in || !ours())
		return 0;
	count_get(G_ENTER_GET_B, bpf_task_storage_get(&map_b, task, 0, F_CREATE), F_CREATE);
	count_get(G_ENTER_GET_A, bpf_task_storage_get(&map_a, task, 0, F_CREATE), F_CREATE);
	*in = 1;
	count_ret(G_OUTER_DELETE_A, bpf_task_storage_delete(&map_a, task));
	*in = 0;
	return 0;
}

static __always_inline void nest(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 *in = inside_flag();

	if (!in || !*in || !ours())
		return;
	*in = 0;
	count_ret(G_NESTED_DELETE_B, bpf_task_storage_delete(&map_b, task));
}

/* one of the two is loaded: the first this kernel calls out of line (hooks in
 * lstrace/repro/cases/storage_deadlock.py) */
SEC("fentry/bpf_selem_unlink_storage_nolock_misc")
int on_unlink_misc(void *ctx)
{
	nest();
	return 0;
}

SEC("fentry/bpf_selem_unlink_storage_nolock")
int on_unlink(void *ctx)
{
	nest();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
