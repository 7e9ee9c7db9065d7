/* Shared by the repro workloads: each program counts its own helper returns
 * in a per-CPU array, so the counts are exact ground truth per CPU.
 * Slot = group * NCAT + category; Python (lstrace/repro/stats.py) reads it. */
#ifndef LSTRACE_REPRO_H
#define LSTRACE_REPRO_H

#define EPERM 1
#define ENOENT 2
#define ENOMEM 12
#define EEXIST 17
#define EBUSY 16
#define EDEADLK 35
#define ETIMEDOUT 110

#define BPF_F_NO_PREALLOC_ (1U << 0)
#define F_CREATE 1 /* BPF_LOCAL_STORAGE_GET_F_CREATE */

enum cat { C_CALLS, C_OK, C_BUSY, C_DEADLOCK, C_TIMEOUT, C_NOMEM, C_NOT_FOUND, C_OTHER, NCAT };
#define NGROUPS 16

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NGROUPS * NCAT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void bump(__u32 group, __u32 cat)
{
	__u32 key = group * NCAT + cat;
	__u64 *v = bpf_map_lookup_elem(&stats, &key);

	if (v)
		*v += 1;
}

/* One call that returned an int (0 or -errno). */
static __always_inline void count_ret(__u32 group, long ret)
{
	__u32 cat;

	switch (ret) {
	case 0: cat = C_OK; break;
	case -EBUSY: cat = C_BUSY; break;
	case -EDEADLK: cat = C_DEADLOCK; break;
	case -ETIMEDOUT: cat = C_TIMEOUT; break;
	case -ENOMEM: cat = C_NOMEM; break;
	case -ENOENT: cat = C_NOT_FOUND; break;
	default: cat = C_OTHER;
	}
	bump(group, C_CALLS);
	bump(group, cat);
}

/* One get call: NULL without F_CREATE means "absent"; NULL with F_CREATE is
 * counted as busy (generation A/B: the only cause besides ENOMEM; Python
 * relabels it on generation C, where the errno is lost). */
static __always_inline void count_get(__u32 group, void *ptr, __u64 flags)
{
	bump(group, C_CALLS);
	if (ptr)
		bump(group, C_OK);
	else
		bump(group, (flags & F_CREATE) ? C_BUSY : C_NOT_FOUND);
}

/* Parameters written by Python before the run. */
struct cfg {
	__u64 n;       /* get calls */
	__u64 nulls;   /* of which without F_CREATE on absent storage */
	__u64 deletes; /* delete calls after the gets */
	__u64 tgid;    /* only this process (IRQ-context programs) */
	__u64 arg4, arg5, arg6, arg7;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cfg);
} cfg SEC(".maps");

static __always_inline struct cfg *get_cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cfg, &zero);
}

#endif
