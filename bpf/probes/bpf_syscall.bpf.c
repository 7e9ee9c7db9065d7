// SPDX-License-Identifier: GPL-2.0
/* lstrace probe bpf_syscall (lstrace/probes/bpf_syscall.py): appended to bpf/lstrace.bpf.c
 * by lstrace/program.py when the probe is planned; uses its shared code
 * (counters, state, guard, hist_add, record_event, busy_now). */

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

static __always_inline u32 map_type_of_fd(u32 fd)
{
	u64 task = bpf_get_current_task(), files = 0, fdt = 0, fdarr = 0, file = 0, map = 0;
	u32 max_fds = 0, type = 0;
	bpf_probe_read_kernel(&files, 8, (void *)(task + OFF_TASK_FILES));
	if (!files)
		return 0;
	bpf_probe_read_kernel(&fdt, 8, (void *)(files + OFF_FILES_FDT));
	if (!fdt)
		return 0;
	bpf_probe_read_kernel(&max_fds, 4, (void *)(fdt + OFF_FDT_MAX_FDS));
	if (fd >= max_fds)
		return 0;
	bpf_probe_read_kernel(&fdarr, 8, (void *)(fdt + OFF_FDT_FD));
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
static __always_inline int count_sys_error(u64 regs, s64 ret)
{
	/* no nesting guard: a syscall's exit never runs inside another one on
	 * this CPU, and nothing here takes a lock */
	u32 zero = 0;
	struct counters *c = counters.lookup(&zero);
	if (!c)
		return 0;
	u64 cmd = 0, uattr = 0;
	bpf_probe_read_kernel(&cmd, sizeof(cmd), (void *)(regs + OFF_REGS_ARG0));
	bpf_probe_read_kernel(&uattr, sizeof(uattr), (void *)(regs + OFF_REGS_ARG1));
	u32 mt = 0;     /* bucket 0: "none" */
	if (IS_MAP_ELEM_CMD(cmd)) {
		u32 fd = 0;
		bpf_probe_read_user(&fd, sizeof(fd), (void *)uattr);
		mt = map_bucket(map_type_of_fd(fd));
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
/* tracepoint mode: raw_tp sys_exit (perf-based syscalls:sys_exit_bpf is skipped
 * while bpf_prog_active is raised; a raw tracepoint is not).  It runs at every
 * syscall's exit: the first test is on the return value, the second on the
 * syscall number. */
int lst_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	s64 ret = (s64)ctx->args[1];
	if (ret >= 0)
		return 0;
	u64 regs = ctx->args[0], nr = 0;
	bpf_probe_read_kernel(&nr, sizeof(nr), (void *)(regs + OFF_REGS_NR));
	if (nr != NR_BPF)
		return 0;
	return count_sys_error(regs, ret);
}
#endif
