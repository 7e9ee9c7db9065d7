"""Overhead per probed bpf_task_storage_get call, every probe side by side.

Runs where fentry and kprobes attach (a kernel-lab guest: `benchmarks/run`
boots one).  The workload is helper_calls.bpf.c: one BPF_PROG_TEST_RUN makes N
helper calls in a bpf_loop, timed from user space -> ns per call.

Each round runs, for every configuration, one unprobed run and right after it
one run with the probe attached; the overhead of that round is the difference.
Pairing adjacent runs cancels the slow drift of a shared, emulated CPU, which
is larger than the effects measured here.  The order of the configurations
rotates between rounds so none always runs first.

Configurations (name, what is attached to bpf_task_storage_get):
  empty_fentry      an empty fentry program
  empty_fexit       an empty fexit program: the floor for counting mode (sees return values)
  empty_fentry_fexit  empty fentry + fexit: the floor for --latency
  ktime_fentry_fexit  fentry + fexit that each only call bpf_ktime_get_ns
  empty_kprobe      an empty kprobe (funccount's mechanism without its counter)
  empty_kretprobe   an empty kretprobe
  empty_kprobe_kretprobe  empty kprobe + kretprobe (the kprobe-mode floor for gets)
  lstrace_fentry    lstrace Session(probes=["task_storage_get"], mode="fentry"): counting
  lstrace_fentry_latency  the same with latency=True (serve --latency)
  lstrace_kprobe    the same in kprobe mode (_latency: with latency=True)
  funccount         BCC's funccount-bpfcc, a real subprocess per round

Every probe's own count of calls is checked against the calls made, so a probe
that silently saw nothing cannot pass as cheap.

Prints one JSON object (see main()); `--table` prints a table instead.
"""
import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

from common import SessionToggle, clocksource, summarize  # noqa: E402  (puts the checkout on sys.path)
from lstrace import bpfcalls, bpfsys, perfsys  # noqa: E402
from lstrace.repro import libbpf  # noqa: E402
from lstrace.workload import pinned  # noqa: E402

FUNC = "bpf_task_storage_get"
PROBE = "task_storage_get"
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helper_calls.bpf.c")
FUNCCOUNT = "/usr/sbin/funccount-bpfcc"


def build(outdir):
    """clang the workload (no vmlinux.h: a second even under TCG)."""
    out = os.path.join(outdir, "helper_calls.bpf.o")
    arch_inc = "/usr/include/" + os.uname().machine + "-linux-gnu"   # asm/types.h
    subprocess.run(["clang", "-target", "bpf", "-g", "-O2", "-I", arch_inc, "-c", SRC,
                    "-o", out], check=True)
    return out


class Workload:
    def __init__(self, obj_path, cpu):
        self.obj = libbpf.Object(obj_path)
        self.fd = self.obj.prog_fd("calls")
        self.cpu = cpu

    def run(self, n):
        """Wall time of one test run of n helper calls, in ns per call."""
        ctx = struct.pack("<Q", n)
        with pinned(self.cpu):
            t0 = time.perf_counter_ns()
            ret, retval = bpfcalls.prog_test_run(self.fd, ctx=ctx)
            dt = time.perf_counter_ns() - t0
        if ret < 0 or retval != 0:
            raise RuntimeError(f"test run failed: ret={ret} retval={retval}")
        return dt / n

    def close(self):
        self.obj.close()


# ---- configurations: setup() once, on()/off() per round, seen() = calls counted

class Config:
    name = ""

    def setup(self):
        pass

    def on(self):
        pass

    def off(self):
        pass

    def seen(self):
        return None

    def teardown(self):
        pass


class EmptyFentry(Config):
    """Empty fentry (and fexit) programs loaded once, linked per round."""
    name = "empty_fentry"
    kinds = (False,)
    insns = bpfsys._RET0

    def setup(self):
        from lstrace.kernel import Kernel
        fid = Kernel().btf.func_id(FUNC)
        self.progs = [bpfsys.prog_load(bpfsys.PROG_TYPE_TRACING, self.insns, b"bench_empty",
                                       bpfsys.TRACE_FEXIT if fexit else bpfsys.TRACE_FENTRY, fid)
                      for fexit in self.kinds]
        self.links = []
        self.on()          # fail here, not mid-measurement, where attaching is forbidden
        self.off()

    def on(self):
        self.links = [bpfsys.raw_tracepoint_open(fd) for fd in self.progs]

    def off(self):
        for fd in self.links:
            os.close(fd)
        self.links = []

    def teardown(self):
        self.off()
        for fd in self.progs:
            os.close(fd)


class EmptyFexit(EmptyFentry):
    """The floor for any tool that sees return values (lstrace's counting mode)."""
    name = "empty_fexit"
    kinds = (True,)


class EmptyFentryFexit(EmptyFentry):
    name = "empty_fentry_fexit"
    kinds = (False, True)


# call bpf_ktime_get_ns; mov r0, 0; exit
_KTIME = struct.pack("<BBhi", 0x85, 0, 0, 5) + bpfsys._RET0


class KtimeFentryFexit(EmptyFentry):
    """fentry + fexit that only read the clock: the least a latency histogram
    costs, to tell clock reads (slow under emulation) from lstrace's own work."""
    name = "ktime_fentry_fexit"
    kinds = (False, True)
    insns = _KTIME


class EmptyKprobe(Config):
    """An empty kprobe (+ kretprobe) through the kprobe PMU, as BCC attaches them."""
    name = "empty_kprobe"
    retprobes = (False,)

    def setup(self):
        self.pmu_type = perfsys.kprobe_pmu_type()
        self.prog = bpfsys.prog_load(bpfsys.PROG_TYPE_KPROBE, bpfsys._RET0, b"bench_empty")
        self.events = []
        self.on()
        self.off()

    def _open(self, retprobe):
        fd = perfsys.kprobe_event(FUNC, retprobe, self.pmu_type)
        if fd < 0:
            raise OSError(-fd, f"perf_event_open kprobe {FUNC}")
        perfsys.attach_perf_event(fd, self.prog)
        return fd

    def on(self):
        self.events = [self._open(r) for r in self.retprobes]

    def off(self):
        for fd in self.events:
            os.close(fd)
        self.events = []

    def teardown(self):
        self.off()
        os.close(self.prog)


class EmptyKretprobe(EmptyKprobe):
    name = "empty_kretprobe"
    retprobes = (True,)


class EmptyKprobeKretprobe(EmptyKprobe):
    name = "empty_kprobe_kretprobe"
    retprobes = (False, True)


class Lstrace(Config):
    """A real lstrace Session, compiled once; its links are dropped and made
    again per round (common.SessionToggle)."""

    def __init__(self, mode, latency=False):
        self.mode, self.latency = mode, latency
        self.name = f"lstrace_{mode}" + ("_latency" if latency else "")

    def setup(self):
        self.t = SessionToggle([PROBE], mode=self.mode, latency=self.latency)
        if self.t.modes.get(PROBE) != self.mode:
            raise RuntimeError(f"lstrace {PROBE} attached as {self.t.modes.get(PROBE)}")
        self.t.off()
        self.total, self.before = 0, None

    def _calls(self):
        snap = self.t.snapshot()
        return sum(snap.calls(PROBE, c) for c in snap.cpus)

    def on(self):
        self.before = self._calls()
        self.t.on()

    def off(self):
        self.t.off()
        if self.before is not None:
            self.total += self._calls() - self.before
            self.before = None

    def seen(self):
        return self.total

    def teardown(self):
        self.t.stop()


class Funccount(Config):
    """BCC's funccount as shipped (kprobe + BPF_ARRAY counter), one process per
    round: start, wait for its 'Tracing' line, run, SIGINT, read its count."""
    name = "funccount"

    def setup(self):
        if not os.path.exists(FUNCCOUNT):
            raise RuntimeError(f"{FUNCCOUNT} missing (apt-get install bpfcc-tools)")
        self.total = 0
        self.p = None

    def on(self):
        self.p = subprocess.Popen([FUNCCOUNT, FUNC], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        head = []
        for line in self.p.stdout:
            head.append(line)
            if line.startswith("Tracing"):
                return
        raise RuntimeError("funccount did not start: " + "".join(head)[-500:])

    def off(self):
        if not self.p:
            return
        self.p.send_signal(signal.SIGINT)
        out, _ = self.p.communicate(timeout=120)
        m = re.search(rf"^{FUNC}\s+(\d+)\s*$", out, re.M)
        self.total += int(m.group(1)) if m else 0
        self.p = None

    def seen(self):
        return self.total

    def teardown(self):
        if self.p:
            self.p.kill()
            self.p.wait()


def all_configs():
    return [EmptyFentry(), EmptyFexit(), EmptyFentryFexit(), KtimeFentryFexit(), EmptyKprobe(),
            EmptyKretprobe(), EmptyKprobeKretprobe(), Lstrace("fentry"), Lstrace("fentry", True),
            Lstrace("kprobe"), Lstrace("kprobe", True), Funccount()]


def measure(n, rounds, cpu, configs, log=lambda *a: None):
    tmp = tempfile.mkdtemp(prefix="lstrace-bench-")
    try:
        w = Workload(build(tmp), cpu)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)     # libbpf has the object in memory
    res = {"kernel": os.uname().release, "n_calls": n, "rounds": rounds, "cpu": cpu,
           "ncpus": os.cpu_count(), "clocksource": clocksource(),
           "configs": {}, "skipped": {}, "setup_s": {}}
    ready = []
    for c in configs:
        t0 = time.monotonic()
        try:
            c.setup()
            ready.append(c)
            res["setup_s"][c.name] = round(time.monotonic() - t0, 1)
            log(f"{c.name}: ready in {time.monotonic() - t0:.1f} s")
        except Exception as e:         # report, keep measuring the others
            res["skipped"][c.name] = f"{type(e).__name__}: {e}"
            log(f"{c.name}: skipped: {e}")
    try:
        w.run(n)                                   # warm-up: storage created, caches hot
        base, on, diff = [], {c.name: [] for c in ready}, {c.name: [] for c in ready}
        for r in range(rounds):
            k = r % len(ready) if ready else 0
            for c in ready[k:] + ready[:k]:
                if c.name in res["skipped"]:
                    continue
                b = w.run(n)
                try:
                    c.on()
                except Exception as e:
                    res["skipped"][c.name] = f"{type(e).__name__}: {e}"
                    log(f"{c.name}: dropped: {e}")
                    continue
                t = w.run(n)
                c.off()
                base.append(b)
                on[c.name].append(t)
                diff[c.name].append(t - b)
            log(f"round {r + 1}/{rounds} done")
        res["baseline_ns"] = summarize(base) if base else None
        if not base:                               # nothing attaches here: the workload alone
            res["baseline_ns"] = summarize([w.run(n) for _ in range(rounds)])
        for c in ready:
            if c.name in res["skipped"]:
                continue
            seen = c.seen()
            res["configs"][c.name] = {"ns_per_call": summarize(on[c.name]),
                                      "overhead_ns": summarize(diff[c.name]),
                                      "overhead_runs": diff[c.name],
                                      "calls_made": n * rounds, "calls_seen": seen}
            if seen is not None and seen != n * rounds:
                res["configs"][c.name]["warning"] = f"probe counted {seen} of {n * rounds} calls"
        from report import ratios_json
        res["ratios"] = ratios_json(res)
    finally:
        for c in ready:
            try:
                c.teardown()
            except Exception:
                pass
        w.close()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--calls", type=int, default=1_000_000, help="helper calls per run")
    ap.add_argument("-r", "--rounds", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=1, help="CPU the workload runs on")
    ap.add_argument("--only", default="", help="comma-separated configuration names")
    ap.add_argument("--table", action="store_true", help="print a table, not JSON")
    a = ap.parse_args()
    configs = all_configs()
    if a.only:
        keep = set(a.only.split(","))
        configs = [c for c in configs if c.name in keep]
    res = measure(a.calls, a.rounds, min(a.cpu, os.cpu_count() - 1), configs,
                  log=lambda m: print(f"# {m}", file=sys.stderr, flush=True))
    if a.table:
        from report import helper_table
        print(helper_table(res))
    else:
        print("BENCH_JSON " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
