"""Added cost per bpf() syscall with lstrace's tracepoint probes attached.

Runs on the host (tracepoints attach where fentry and kprobes may not).
lstrace's `bpf_syscall` (syscalls:sys_enter_bpf / sys_exit_bpf) and
`rqspinlock` (lock:contention_begin / end) probes are attached through one
Session, compiled once; each round runs syscall_loop.c once detached and
once attached, and the difference of the adjacent runs is that round's
overhead.  syscall_loop times N failing BPF_MAP_LOOKUP_ELEM calls (ENOENT, an
error bpf_syscall counts) and N getppid() calls: enabling a syscalls:*
tracepoint turns on the syscall-tracepoint path for every task, so
syscalls lstrace ignores pay something too.

lstrace's own count of ENOENT lookups is checked against the calls made.
"""
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


def build(outdir):
    out = os.path.join(outdir, "syscall_loop")
    subprocess.run(["cc", "-O2", "-o", out, os.path.join(HERE, "syscall_loop.c")], check=True)
    return out


def run_loop(exe, n, cpu):
    """(ns per failing lookup, ns per getppid), the loop pinned to one CPU."""
    out = subprocess.run(["taskset", "-c", str(cpu), exe, str(n)], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def enoent_lookups(snap):
    return sum(v for (cpu, cmd, mtype, err), v in snap.syscall_errors.items()
               if cmd.upper() == "MAP_LOOKUP_ELEM" and err == "ENOENT")


def measure(n, rounds, cpu, log=lambda m: None):
    tmp = tempfile.mkdtemp(prefix="lstrace-bench-")
    try:
        exe = build(tmp)
        t = SessionToggle(PROBES)
        res = {"kernel": os.uname().release, "n_calls": n, "rounds": rounds, "cpu": cpu,
               "modes": t.modes}
        try:
            t.off()
            run_loop(exe, n, cpu)                     # warm-up
            base, on, seen = {"lookup": [], "getppid": []}, {"lookup": [], "getppid": []}, 0
            for r in range(rounds):
                b = run_loop(exe, n, cpu)
                before = enoent_lookups(t.snapshot())
                t.on()
                a = run_loop(exe, n, cpu)
                t.off()
                seen += enoent_lookups(t.snapshot()) - before
                for i, k in enumerate(("lookup", "getppid")):
                    base[k].append(b[i])
                    on[k].append(a[i])
                log(f"round {r + 1}/{rounds}: lookup {b[0]:.0f} -> {a[0]:.0f} ns")
        finally:
            t.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for k in base:
        res[k] = {"base_ns": summarize(base[k]), "on_ns": summarize(on[k]),
                  "overhead_ns": summarize([x - y for x, y in zip(on[k], base[k])]),
                  "runs": {"base": base[k], "on": on[k]}}
    res["calls_made"], res["calls_seen"] = n * rounds, seen
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
