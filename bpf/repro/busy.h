/* SPDX-License-Identifier: GPL-2.0 */
/* task-busy body shared by busy_task.bpf.c and busy_cgrp.bpf.c, which define
 * STORAGE_MAP_TYPE, OWNER(task), storage_get and storage_delete first.
 *
 * hammer   syscall program, test-run by threads pinned to one CPU: map
 *          updates and deletes on `hammered` through bpf_sys_bpf, so the CPU
 *          spends most of its time holding the storage's busy counter.
 * irq      raw_tp on the timer interrupt (LSTRACE_TICK): when it interrupts one of our
 *          threads, look its owner's storage up (get without F_CREATE): if
 *          the last tick created it, delete it (-EBUSY when the interrupted
 *          syscall holds the counter), else get(F_CREATE) (NULL then: busy).
 * Both count their own returns per CPU. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "repro.h"

enum { G_GET, G_DELETE, G_UPDATE_SYS, G_DELETE_SYS, G_LOOKUP };

struct {
	__uint(type, STORAGE_MAP_TYPE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, __u64);
} hammered SEC(".maps");

struct {
	__uint(type, STORAGE_MAP_TYPE);
	__uint(map_flags, BPF_F_NO_PREALLOC_);
	__type(key, int);
	__type(value, __u64);
} in_irq SEC(".maps");

#ifdef LOOKUP_BUSY_VAR
extern const int LOOKUP_BUSY_VAR __ksym;

/* Is this CPU's busy counter held (interrupted holder)?  Then a lookup fails. */
static __always_inline int lookup_busy_held(void)
{
	const int *b = bpf_this_cpu_ptr(&LOOKUP_BUSY_VAR);

	return b && *b;
}
#else
static __always_inline int lookup_busy_held(void)
{
	return 0;    /* lookups do not depend on the counter (generation B) */
}
#endif

/* the timer interrupt's raw tracepoint: lstrace/arch.py's tick, passed by
 * lstrace/repro/build.py (x86-64 local_timer_entry, arm64 hrtimer_expire_entry) */
#ifndef LSTRACE_TICK
#define LSTRACE_TICK "local_timer_entry"
#endif
SEC("raw_tp/" LSTRACE_TICK)
int irq(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct cfg *c = get_cfg();
	void *p;
	int held;

	if (!c || bpf_get_current_pid_tgid() >> 32 != c->tgid)
		return 0;
	/* alternate per owner: delete what the last tick created, else create */
	held = lookup_busy_held();
	p = storage_get(&in_irq, OWNER(task), 0, 0);
	if (!p && held)
		count_ret(G_LOOKUP, -EBUSY);    /* generation A: NULL before the lookup */
	else
		count_get(G_LOOKUP, p, 0);
	if (p)
		count_ret(G_DELETE, storage_delete(&in_irq, OWNER(task)));
	else
		count_get(G_GET, storage_get(&in_irq, OWNER(task), 0, F_CREATE), F_CREATE);
	return 0;
}

struct hammer_args {
	int map_fd;
	int key_fd;	/* a pidfd (task) or a cgroup fd (cgroup) */
	__u32 n;
};

static long hammer_cb(__u32 i, struct hammer_args *a)
{
	union bpf_attr attr;
	__u64 value = i;
	int key = a->key_fd;

	__builtin_memset(&attr, 0, sizeof(attr));
	attr.map_fd = a->map_fd;
	attr.key = (long)&key;
	attr.value = (long)&value;
	count_ret(G_UPDATE_SYS, bpf_sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, sizeof(attr)));
	__builtin_memset(&attr, 0, sizeof(attr));
	attr.map_fd = a->map_fd;
	attr.key = (long)&key;
	count_ret(G_DELETE_SYS, bpf_sys_bpf(BPF_MAP_DELETE_ELEM, &attr, sizeof(attr)));
	return 0;
}

SEC("syscall")
int hammer(struct hammer_args *ctx)
{
	struct hammer_args a = *ctx;

	bpf_loop(a.n, hammer_cb, &a, 0);
	return 0;
}
