"""Added cost per bpf() syscall with lstrace's tracepoint probes attached.

Runs on the host (tracepoints attach where fentry and kprobes may not).
lstrace's `bpf_syscall` (tracepoint mode: one program on the raw sys_exit
tracepoint, filtered on the return value and the syscall number: tp_btf as
lstrace attaches it here, and raw_tp as with --mode kprobe) and
`rqspinlock` (lock:contention_begin / end) probes are attached through one
Session, compiled once; each round runs syscall_loop.c once detached and
once attached, and the difference of the adjacent runs is that round's
overhead.  syscall_loop times N failing BPF_MAP_LOOKUP_ELEM calls (ENOENT, an
error bpf_syscall counts) and N getppid() calls: enabling a syscalls:*
tracepoint turns on the syscall-tracepoint path for every task, so
syscalls lstrace ignores pay something too.

The same is done with an empty raw_tp program on sys_exit (the floor of
lstrace's hook: it runs at every syscall's exit) and with empty programs on
syscalls:sys_enter_bpf / sys_exit_bpf (the perf tracepoints lstrace used
before: only bpf() runs them, but the kernel skips them while bpf_prog_active
is raised).  lstrace's own count of ENOENT lookups is checked against the
calls made.  `ratios`: medians of per-round overhead ratios.
"""
import statistics
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from common import SessionToggle, summarize  # noqa: E402  (puts the checkout on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
PROBES = ["bpf_syscall", "rqspinlock"]
PROG_TYPE_TRACEPOINT = 5
TRACEFS = "/sys/kernel/tracing"


def build(outdir):
    out = os.path.join(outdir, "syscall_loop")
    subprocess.run(["cc", "-O2", "-o", out, os.path.join(HERE, "syscall_loop.c")], check=True)
    return out


KINDS = ("lookup", "getppid", "lookup_ok")


def run_loop(exe, n, cpu):
    """ns per failing lookup, per getppid and per successful lookup (KINDS),
    the loop pinned to one CPU."""
    out = subprocess.run(["taskset", "-c", str(cpu), exe, str(n)], check=True,
                         capture_output=True, text=True).stdout.split()
    return tuple(map(float, out))


TRACING_TYPES = {2: "kprobe", 5: "tracepoint", 7: "perf_event", 17: "raw_tracepoint",
                 26: "tracing"}


def other_tracing_programs(ours=()):
    """Tracing programs loaded by others (not the ids in `ours`): one on a
    syscalls:* tracepoint puts every task on the slow syscall path, and the
    baseline would already pay what this piece measures."""
    from lstrace import bpfsys
    return sorted(f"{TRACING_TYPES[i.type]}:{i.name}"
                  for i in bpfsys.iter_prog_infos(exclude_ids=set(ours))
                  if i.type in TRACING_TYPES)


def program_ids(config):
    """The ids of the programs a configuration holds (an empty one's, a session's)."""
    from lstrace import bpfsys
    fds = [config.prog] if hasattr(config, "prog") else list(config.s._progs.values())
    return {bpfsys.prog_info(fd).id for fd in fds}


def enoent_lookups(snap):
    return sum(v for (cpu, cmd, mtype, err), v in snap.syscall_errors.items()
               if cmd.upper() == "MAP_LOOKUP_ELEM" and err == "ENOENT")


class EmptyTracepoints:
    """Empty programs on syscalls:sys_enter_bpf and sys_exit_bpf: the floor of
    what watching bpf() through these tracepoints costs."""
    EVENTS = ("sys_enter_bpf", "sys_exit_bpf")

    def __init__(self):
        from lstrace import bpfsys
        self.prog = bpfsys.prog_load(PROG_TYPE_TRACEPOINT, bpfsys._RET0, b"bench_empty")
        self.ids = [int(open(f"{TRACEFS}/events/syscalls/{e}/id").read()) for e in self.EVENTS]
        self.fds = []

    def on(self):
        from lstrace import perfsys
        for tp in self.ids:
            fd = perfsys.tracepoint_event(tp)
            if fd < 0:
                raise OSError(-fd, "perf_event_open tracepoint")
            self.fds.append(fd)
            perfsys.attach_perf_event(fd, self.prog)

    def off(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def stop(self):
        self.off()
        os.close(self.prog)


class EmptyRawSysExit(EmptyTracepoints):
    """An empty raw_tp program on sys_exit: the floor of lstrace's own hook."""

    def __init__(self):
        from lstrace import bpfsys
        self.prog = bpfsys.prog_load(bpfsys.PROG_TYPE_RAW_TRACEPOINT, bpfsys._RET0,
                                     b"bench_empty")
        self.fds = []

    def on(self):
        from lstrace import bpfsys
        self.fds.append(bpfsys.raw_tracepoint_open(self.prog, b"sys_exit"))


def ratios(res):
    """Medians of per-round overhead ratios: lstrace to each floor, per syscall."""
    def per_round(cfg, k):
        r = res["configs"][cfg][k]["runs"]
        return [a - b for a, b in zip(r["on"], r["base"])]
    out = {}
    for k in KINDS:
        for cfg in LSTRACE_CONFIGS:
            ours = per_round(cfg, k)
            for floor in ("empty_raw_sys_exit", "empty_tracepoints"):
                xs = [a / b for a, b in zip(ours, per_round(floor, k)) if b > 0]
                out[f"{k}_{cfg}_vs_{floor}"] = round(statistics.median(xs), 3) if xs else None
    return out


# lstrace as it attaches here (bpf_syscall: tp_btf) and with --mode kprobe
# (bpf_syscall: raw_tp, every field through bpf_probe_read_kernel)
LSTRACE_CONFIGS = {"lstrace": "auto", "lstrace_raw_tp": "kprobe"}


def measure(n, rounds, cpu, log=lambda m: None):
    """Per round and configuration: one run detached, one attached."""
    tmp = tempfile.mkdtemp(prefix="lstrace-bench-")
    configs = {}
    try:
        exe = build(tmp)
        others_before = other_tracing_programs()
        configs["empty_raw_sys_exit"] = EmptyRawSysExit()
        configs["empty_tracepoints"] = EmptyTracepoints()
        for name, mode in LSTRACE_CONFIGS.items():
            configs[name] = t = SessionToggle(PROBES, mode=mode)
            t.off()
        res = {"kernel": os.uname().release, "n_calls": n, "rounds": rounds, "cpu": cpu,
               "modes": configs["lstrace"].modes,
               "variants": {name: configs[name].funcs for name in LSTRACE_CONFIGS},
               "configs": {}}
        run_loop(exe, n, cpu)                         # warm-up
        runs = {c: {k: ([], []) for k in KINDS} for c in configs}
        seen = dict.fromkeys(LSTRACE_CONFIGS, 0)
        for r in range(rounds):
            order = list(configs.items())
            k = r % len(order)                    # rotate: none always runs first
            for name, c in order[k:] + order[:k]:
                b = run_loop(exe, n, cpu)
                before = enoent_lookups(c.snapshot()) if name in seen else 0
                c.on()
                a = run_loop(exe, n, cpu)
                c.off()
                if name in seen:
                    seen[name] += enoent_lookups(c.snapshot()) - before
                for i, k in enumerate(KINDS):
                    runs[name][k][0].append(b[i])
                    runs[name][k][1].append(a[i])
            log(f"round {r + 1}/{rounds} done")
        # while ours are still loaded (freeing them takes an RCU grace period)
        ours = set().union(*(program_ids(c) for c in configs.values()))
        others_after = other_tracing_programs(ours)
    finally:
        for c in configs.values():
            c.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    res["other_tracing_programs"] = sorted(set(others_before) | set(others_after))
    for name, per in runs.items():
        res["configs"][name] = {
            k: {"base_ns": summarize(base), "on_ns": summarize(on),
                "overhead_ns": summarize([x - y for x, y in zip(on, base)]),
                "runs": {"base": base, "on": on}}
            for k, (base, on) in per.items()}
    res["calls_made"], res["calls_seen"] = n * rounds, seen["lstrace"]
    res["calls_seen_raw_tp"] = seen["lstrace_raw_tp"]
    res["ratios"] = ratios(res)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--calls", type=int, default=1_000_000)
    ap.add_argument("-r", "--rounds", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=1)
    a = ap.parse_args()
    res = measure(a.calls, a.rounds, min(a.cpu, os.cpu_count() - 1),
                  log=lambda m: print(f"# {m}", file=sys.stderr, flush=True))
    print("BENCH_JSON " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
