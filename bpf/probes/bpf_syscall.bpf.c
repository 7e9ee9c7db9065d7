// SPDX-License-Identifier: GPL-2.0
/* lstrace probe bpf_syscall (lstrace/probes/bpf_syscall.py): appended by
 * lstrace/program.py when the probe is planned; uses the core (counters,
 * bpf/core/).  The cases, offsets and NR_BPF come from Python. */

/* ---- bpf() errors by command, map type and errno */

static __always_inline u32 cmd_index(u32 cmd)
{
	switch (cmd) {
	CMD_CASES
	}
	return N_CMD - 1;
}

static __always_inline u32 sys_errno_index(s64 err)
{
	switch (-err) {
	SYSERR_CASES
	}
	return N_SYSERR - 1;
}

/* Reading kernel memory.  `typed` (tp_btf): pt_regs and the task are
 * BTF-typed pointers, so their fields and the fd table's are plain loads that
 * the verifier checks against BTF (a fault reads 0); a bpf_probe_read_kernel
 * costs ~50 ns on a VM, a plain load ~1.  raw_tp and the fexit see plain
 * numbers: every read is a bpf_probe_read_kernel.  The asm keeps BCC from
 * rewriting the loads into probe reads.  `typed` is a constant: each program
 * keeps one branch. */
static __always_inline u64 load64(u64 p, int typed)
{
	u64 v = 0;
	if (typed)
		asm volatile("%0 = *(u64 *)(%1 + 0)" : "=r"(v) : "r"(p));
	else
		bpf_probe_read_kernel(&v, sizeof(v), (void *)p);
	return v;
}

static __always_inline u64 load32(u64 p, int typed)
{
	u64 v = 0;
	u32 w = 0;
	if (typed) {
		asm volatile("%0 = *(u32 *)(%1 + 0)" : "=r"(v) : "r"(p));
		return v;
	}
	bpf_probe_read_kernel(&w, sizeof(w), (void *)p);
	return w;
}

/* fd -> struct file -> bpf_map -> map_type.  The fd array and a file's
 * private_data have no struct type in BTF: probe reads in every mode. */
static __always_inline u32 map_type_of_fd(u32 fd, int typed)
{
	u64 task = typed ? (u64)bpf_get_current_task_btf() : bpf_get_current_task();
	u64 files = 0, fdt = 0, fdarr = 0, file = 0, map = 0;
	u32 type = 0;
	files = load64(task + OFF_TASK_FILES, typed);
	if (!files)
		return 0;
	fdt = load64(files + OFF_FILES_FDT, typed);
	if (!fdt)
		return 0;
	if (fd >= load32(fdt + OFF_FDT_MAX_FDS, typed))
		return 0;
	fdarr = load64(fdt + OFF_FDT_FD, typed);
	bpf_probe_read_kernel(&file, 8, (void *)(fdarr + 8 * (u64)fd));
	if (!file)
		return 0;
	bpf_probe_read_kernel(&map, 8, (void *)(file + OFF_FILE_PRIVATE));
	if (!map)
		return 0;
	bpf_probe_read_kernel(&type, 4, (void *)(map + OFF_MAP_TYPE));
	return type;
}

static __always_inline u32 map_bucket(u32 type)
{
	switch (type) {
	MAPTYPE_CASES
	}
	return N_MAPTYPE - 1;
}

/* One program at the syscall's exit, no entry program and no frame: the
 * saved user registers still hold the bpf() arguments (cmd, uattr), so a
 * failing call is classified where it returns.  Successes return at once. */
static __always_inline int count_sys_error(u64 regs, s64 ret, int typed)
{
	/* no nesting guard: a syscall's exit never runs inside another one on
	 * this CPU, and nothing here takes a lock */
	u32 zero = 0;
	struct counters *c = counters.lookup(&zero);
	if (!c)
		return 0;
	u64 cmd = load64(regs + OFF_REGS_ARG0, typed), uattr = load64(regs + OFF_REGS_ARG1, typed);
	u32 mt = 0;     /* bucket 0: "none" */
	if (IS_MAP_ELEM_CMD(cmd)) {
		u32 fd = 0;
		bpf_probe_read_user(&fd, sizeof(fd), (void *)uattr);
		mt = map_bucket(map_type_of_fd(fd, typed));
	}
	u32 ci = cmd_index(cmd), ei = sys_errno_index(ret);
	if (ci < N_CMD && mt < N_MAPTYPE && ei < N_SYSERR)
		__sync_fetch_and_add(&c->sys[ci][mt][ei], 1);
	return 0;
}

#if BPF_SYSCALL_FEXIT
/* fentry mode: an fexit on the arch's bpf() syscall wrapper, generated after
 * this file by lstrace/probes/bpf_syscall.py (glue: BCC pastes the literal
 * function name) */
#else
/* tracepoint mode: the raw sys_exit tracepoint (perf-based syscalls:sys_exit_bpf
 * is skipped while bpf_prog_active is raised; a raw tracepoint is not).  It
 * runs at every syscall's exit: the first test is on the return value, the
 * second on the syscall number.  Two programs, one attached: tp_btf (typed
 * loads; loaded by lstrace/loader/child.py, BCC cannot name a tp_btf target) and,
 * where that does not load, raw_tp. */
static __always_inline int on_sys_exit(u64 regs, s64 ret, int typed)
{
	if (ret >= 0)
		return 0;
	if (load64(regs + OFF_REGS_NR, typed) != NR_BPF)
		return 0;
	return count_sys_error(regs, ret, typed);
}

int lst_sys_exit_btf(u64 *ctx)
{
	return on_sys_exit(ctx[0], (s64)ctx[1], 1);
}

int lst_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return on_sys_exit(ctx->args[0], (s64)ctx->args[1], 0);
}
#endif
