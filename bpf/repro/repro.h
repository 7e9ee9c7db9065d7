/* Shared by the repro workloads: each program counts its own helper returns
 * in a per-CPU array, so the counts are exact ground truth per CPU.
 * Key = group, value = one counter per category; lstrace/repro/stats.py reads it. */
#ifndef LSTRACE_REPRO_H
#define LSTRACE_REPRO_H

/* EPERM, ENOENT, ...: -D flags from Python's errno (lstrace/repro/build.py);
 * the flags: vmlinux.h's enums */
#define BPF_F_NO_PREALLOC_ BPF_F_NO_PREALLOC
#define F_CREATE BPF_LOCAL_STORAGE_GET_F_CREATE

enum cat { C_CALLS, C_OK, C_BUSY, C_DEADLOCK, C_TIMEOUT, C_NOMEM, C_NOT_FOUND, C_OTHER, NCAT };
#define NGROUPS 16

struct counts {
	__u64 c[NCAT];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NGROUPS);
	__type(key, __u32);
	__type(value, struct counts);
} stats SEC(".maps");

/* This CPU's counters of one group. Look it up before taking a
 * bpf_res_spin_lock: no helper may be called while one is held. */
static __always_inline struct counts *group(__u32 g)
{
	return bpf_map_lookup_elem(&stats, &g);
}

/* One call that returned an int (0 or -errno); plain stores only. */
static __always_inline void tally(struct counts *s, long ret)
{
	__u32 cat;

	if (ret == 0)
		cat = C_OK;
	else if (ret == -EBUSY)
		cat = C_BUSY;
	else if (ret == -EDEADLK)
		cat = C_DEADLOCK;
	else if (ret == -ETIMEDOUT)
		cat = C_TIMEOUT;
	else if (ret == -ENOMEM)
		cat = C_NOMEM;
	else if (ret == -ENOENT)
		cat = C_NOT_FOUND;
	else
		cat = C_OTHER;
	s->c[C_CALLS]++;
	s->c[cat]++;
}

static __always_inline void count_ret(__u32 g, long ret)
{
	struct counts *s = group(g);

	if (s)
		tally(s, ret);
}

/* One get call: NULL without F_CREATE means "absent"; NULL with F_CREATE is
 * counted as busy (generation A/B: the only cause besides ENOMEM; Python
 * relabels it on generation C, where the errno is lost). */
static __always_inline void count_get(__u32 g, void *ptr, __u64 flags)
{
	struct counts *s = group(g);

	if (!s)
		return;
	s->c[C_CALLS]++;
	if (ptr)
		s->c[C_OK]++;
	else if (flags & F_CREATE)
		s->c[C_BUSY]++;
	else
		s->c[C_NOT_FOUND]++;
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
