// SPDX-License-Identifier: GPL-2.0
/* lstrace core: reading the kernel's per-CPU variables (addresses from
 * kallsyms: PCPU_OFFSETS is __per_cpu_offset, BUSY_* the busy counters). */

/* This CPU's copy of a per-CPU kernel variable at `var` (0: unreadable). */
static __always_inline u64 percpu_addr(u64 var, u64 offsets)
{
	u64 off = 0;
	u32 cpu = bpf_get_smp_processor_id();
	bpf_probe_read_kernel(&off, sizeof(off), (void *)(offsets + sizeof(off) * (u64)cpu));
	return off ? var + off : 0;
}

/* The value of a busy counter (a per-CPU int) on this CPU; 0 if unknown. */
static __always_inline u32 busy_now(u64 var)
{
	u32 v = 0;
	if (var && PCPU_OFFSETS) {
		u64 a = percpu_addr(var, PCPU_OFFSETS);
		if (a)
			bpf_probe_read_kernel(&v, sizeof(v), (void *)a);
	}
	return v;
}
