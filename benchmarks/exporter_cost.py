"""What serving metrics costs: scrape formatting, daemon memory, `top` CPU.

  synthetic   scrape latency and size for hand-built snapshots of 2, 64, 256
              and 1024 CPUs: what `lstrace serve` does per HTTP scrape after
              reading its maps (SnapshotCollector.render: fold + fast writer),
              and, for comparison, prometheus_client's generate_latest of the
              same families (what --textfile and --once use).
  serve       a real `lstrace serve` on this host: start-up time (process start
              to "serving http"), VmRSS and RssAnon once it serves, and VmRSS
              after a series of HTTP scrapes (also timed, with their size).
  top         a real `lstrace top -i 1` without a terminal: CPU time it uses
              per second once its probes are attached (/proc/PID/task/*/schedstat).

Each piece is repeated; every number comes with median and spread.
"""
import argparse
import gzip
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from common import ROOT, summarize  # noqa: E402  (puts the checkout on sys.path)

PYTHON = sys.executable


# ---- synthetic snapshots

def synthetic_snapshot(ncpus, seed=1, maps=False):
    """Every default helper and tracepoint probe attached (with `maps`, the
    opt-in map probes too: --probes +maps), every outcome, latency slot
    and rqspinlock (errno, kind, caller) non-zero on every CPU.  bpf() errors:
    36 label sets per CPU (3 element commands x 3 map types x 4 errnos), a busy
    host's worth; the full command x map type x errno cube never occurs."""
    from lstrace import layout, probes
    from lstrace.snapshot import ProbeStatus, ProgramStats, Snapshot
    rnd = random.Random(seed)
    big = lambda: rnd.randrange(1, 10**9)  # noqa: E731  (realistic digit counts)
    helpers = [h for h in probes.HELPERS if not h.group or (maps and h.group == "maps")]
    statuses = ([ProbeStatus(h.name, "helper", "fentry", True, "", h.func)
                 for h in helpers] +
                [ProbeStatus(t.name, "tracepoint", "tracepoint", True) for t in probes.TRACEPOINTS])
    s = Snapshot(taken=time.monotonic(), cpus=list(range(ncpus)),
                 kernel={"release": "7.3.4+deb13-amd64", "generation": "C"}, probes=statuses)
    for cpu in s.cpus:
        for h in helpers:
            s.helper[(h.name, cpu)] = {o: big() for o in layout.OUTCOMES}
            s.latency[(h.name, cpu)] = [big() for _ in range(layout.NSLOTS)]
        for err in layout.RQ_ERRNOS:
            for kind in layout.RQ_KINDS:
                for caller in layout.CALLERS:
                    s.rq_failures[(cpu, err, kind, caller)] = big()
        s.rq_wait[cpu] = [big() for _ in range(layout.NSLOTS)]
        for cmd in ("MAP_LOOKUP_ELEM", "MAP_UPDATE_ELEM", "MAP_DELETE_ELEM"):
            for mtype in ("task_storage", "cgrp_storage", "hash"):
                for err in ("ENOENT", "EDEADLK", "ETIMEDOUT", "ENOMEM"):
                    s.syscall_errors[(cpu, cmd, mtype, err)] = big()
        s.busy_samples[cpu] = (big(), {c: big() for c in layout.BUSY_COUNTERS})
        s.guard_skips[cpu] = big()
    pid = 100
    for st in statuses:              # lstrace's programs: entry + exit per probe
        for part in ("entry", "exit"):
            pid += 1
            helper = st.kind == "helper"
            s.programs.append(ProgramStats(pid, f"lst_{st.name}_{part}"[:15], big(), big(), 0,
                                           probe=st.name if helper else "",
                                           role=part if helper else ""))
    return s


def scrape_text(snap, collector=None):
    """One HTTP scrape's body, as `lstrace serve` makes it."""
    from lstrace.exporter import SnapshotCollector
    return (collector or SnapshotCollector(lambda: snap)).render()


def client_text(collector):
    """prometheus_client's generate_latest of the same collector (textfile, --once)."""
    from prometheus_client import CollectorRegistry, generate_latest
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return generate_latest(reg)


def series_formula(ncpus, helpers, cpu_reasons=1, rqspinlock=True, busy_sampler=True,
                   syscall_sets=36, probes=22, programs=44, blind=0, per_cpu_latency=False,
                   latency=True, maps=0, map_cpu_reasons=2, unseen=6):
    """Series of one scrape (README "Metrics").

    per CPU: helpers (calls) + cpu_reasons (if any helper) + 2 (rqspinlock)
             + 3 (busy_sampler) + 1 (guard skips)
    fixed:   per helper: the failure reasons (7), 1 missed-calls, and with --latency 43
             histogram lines
             + rqspinlock: 90 errno x kind x caller, 8 lock-user views, `unseen` lock
               users' unseen failures (those without a boundary probe), and with
               --latency 43 histogram lines
             + bpf() label sets (36 lock-errno zeros + others seen)
             + probes (attached gauge) + blind spots + 3 per program name + 3
    maps (--probes +maps, M attached map probes): per CPU M calls + map_cpu_reasons
    (1 before 6.15, 2 after, 3 when the kernel's bucket lock is unknown); fixed: per
    map probe the helper probes' 8 (+ 43) and 1 lstrace_map_probe_info.
    --per-cpu-latency: the 43-line histograms per CPU instead of once."""
    from lstrace.layout import CALLERS, FAILURE_REASONS, RQ_ERRNOS, RQ_KINDS
    hist = 43 if latency else 0
    from lstrace.probes.lock_users import LOCK_USERS
    rq_cube = len(RQ_ERRNOS) * len(RQ_KINDS) * len(CALLERS) + len(LOCK_USERS) + unseen
    per_cpu = (helpers + (cpu_reasons if helpers else 0) + 2 * rqspinlock + 3 * busy_sampler
               + 1 + maps + (map_cpu_reasons if maps else 0))
    fixed = ((len(FAILURE_REASONS) + 1 + hist) * (helpers + maps) + (rq_cube + hist) * rqspinlock
             + syscall_sets + probes + blind + 3 * programs + 3 + maps)
    if per_cpu_latency:
        per_cpu += 43 * (helpers + maps + rqspinlock)
        fixed -= 43 * (helpers + maps + rqspinlock)
    return ncpus * per_cpu + fixed


def synthetic_formula(snap, per_cpu_latency=False):
    """series_formula() for a synthetic_snapshot()."""
    from lstrace.probes import bpf_syscall
    syscall = {(c, e, m) for _, c, m, e in snap.syscall_errors}
    syscall |= {(c, e, m) for c in bpf_syscall.SYS_LOCK_CMDS for e in bpf_syscall.SYS_LOCK_ERRNOS
                for m in bpf_syscall.SYS_LOCK_MAP_TYPES}
    from lstrace.probes.helpers import MAP_PROBES
    from lstrace.probes.lock_users import unseen_users
    maps = len({p for p, _ in snap.helper if p in MAP_PROBES})
    return series_formula(len(snap.cpus), len({p for p, _ in snap.helper}) - maps,
                          cpu_reasons=3, syscall_sets=len(syscall), probes=len(snap.probes),
                          programs=len({p.name for p in snap.programs}),
                          per_cpu_latency=per_cpu_latency, maps=maps, map_cpu_reasons=3,
                          unseen=len(unseen_users({p.name: (p.attached, p.mode)
                                                   for p in snap.probes})))


def _timed(fn, reps):
    fn()                                    # warm-up (imports, label cache)
    times, body = [], b""
    for _ in range(reps):
        t0 = time.perf_counter()
        body = fn()
        times.append(time.perf_counter() - t0)
    return summarize(times), body


def synthetic(cpu_counts=(2, 64, 256, 1024), reps=7, log=lambda m: None):
    from lstrace.exporter import SnapshotCollector
    out = {}
    for n in cpu_counts:
        snap = synthetic_snapshot(n)
        coll = SnapshotCollector(lambda: snap)
        fast, body = _timed(lambda: scrape_text(snap, coll), reps)
        client, _ = _timed(lambda: client_text(coll), max(3, reps // 2))
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        out[n] = {"seconds": fast, "bytes": len(body),
                  "gzip_bytes": len(gzip.compress(body, 6)), "series": series,
                  "formula_series": synthetic_formula(snap),
                  "client_seconds": client}
        log(f"synthetic {n} CPUs: {series} series, {fast['median'] * 1e3:.1f} ms "
            f"(prometheus_client {client['median'] * 1e3:.1f} ms), {len(body)} bytes")
    return out


# ---- real processes

def vm_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """CPU time of every thread of a process, in s (schedstat: ns, where
    /proc/PID/stat counts 10 ms ticks, too coarse for a mostly idle top)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass        # a thread that just ended
    return total / 1e9


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lstrace(*args, **kw):
    return subprocess.Popen([PYTHON, "-m", "lstrace", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                            text=True, **kw)


def _wait_line(stream, pattern, timeout, what):
    """Read `stream` until a line matches; the lines read so far on failure."""
    seen, found = [], threading.Event()

    def reader():
        for line in stream:
            seen.append(line)
            if re.search(pattern, line):
                found.set()
                break

    threading.Thread(target=reader, daemon=True).start()
    if not found.wait(timeout):
        raise RuntimeError(f"{what} did not start: {''.join(seen)[-800:]}")
    return seen


def _drain(stream):
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


def _stop(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def serve_once(scrapes):
    """One daemon: RSS when it serves, scrape latencies and sizes, RSS after."""
    port = free_port()
    t0 = time.perf_counter()
    p = _lstrace("serve", "--listen", f"127.0.0.1:{port}", stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
    try:
        lines = _wait_line(p.stderr, r"serving http", 300, "lstrace serve")
        startup = time.perf_counter() - t0
        _drain(p.stderr)
        attached = next((l.split("attached ", 1)[1].strip() for l in lines
                         if "attached " in l and "not attached" not in l), "")
        rss_start, anon_start = vm_kb(p.pid, "VmRSS"), vm_kb(p.pid, "RssAnon")
        url = f"http://127.0.0.1:{port}/metrics"
        times, body = [], b""
        for _ in range(scrapes):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url, timeout=30) as r:
                body = r.read()
            times.append(time.perf_counter() - t0)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        return {"attached": attached, "startup_s": startup,
                "rss_start_kb": rss_start, "anon_start_kb": anon_start,
                "rss_after_kb": vm_kb(p.pid, "VmRSS"), "hwm_kb": vm_kb(p.pid, "VmHWM"),
                "scrape_s": times, "bytes": len(body), "series": series}
    finally:
        _stop(p)


def serve(runs=5, scrapes=100, log=lambda m: None):
    rs = []
    for i in range(runs):
        rs.append(serve_once(scrapes))
        log(f"serve {i + 1}/{runs}: started in {rs[-1]['startup_s']:.2f} s, RSS "
            f"{rs[-1]['rss_start_kb']} -> {rs[-1]['rss_after_kb']} kB "
            f"(anon {rs[-1]['anon_start_kb']} kB)")
    return {"runs": runs, "scrapes_per_run": scrapes, "attached": rs[0]["attached"],
            "rss_start_mb": summarize([r["rss_start_kb"] / 1024 for r in rs]),
            "anon_start_mb": summarize([r["anon_start_kb"] / 1024 for r in rs]),
            # process start to "serving http": imports, loader child, compile, attach
            "startup_s": summarize([r["startup_s"] for r in rs]),
            "rss_after_mb": summarize([r["rss_after_kb"] / 1024 for r in rs]),
            "hwm_mb": summarize([r["hwm_kb"] / 1024 for r in rs]),
            # one median per daemon, so a run's many scrapes do not outvote the others
            "scrape_s": summarize([summarize(r["scrape_s"])["median"] for r in rs]),
            "bytes": summarize([r["bytes"] for r in rs]),
            "series": summarize([r["series"] for r in rs])}


def top_once(window):
    """CPU share of `lstrace top -i 1` over `window` s after its first table."""
    p = _lstrace("top", "-i", "1", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        _wait_line(p.stdout, r"\S", 300, "lstrace top")     # first table: probes attached
        _drain(p.stdout)
        c0, t0 = cpu_seconds(p.pid), time.monotonic()
        time.sleep(window)
        c1, t1 = cpu_seconds(p.pid), time.monotonic()
        return (c1 - c0) / (t1 - t0)
    finally:
        _stop(p)


def top(runs=5, window=20, log=lambda m: None):
    shares = []
    for i in range(runs):
        shares.append(top_once(window))
        log(f"top {i + 1}/{runs}: {shares[-1] * 100:.2f} % of a CPU")
    return {"runs": runs, "window_s": window, "cpu_share": summarize(shares)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7, help="repetitions of each synthetic scrape")
    ap.add_argument("--runs", type=int, default=5, help="daemons / top processes started")
    ap.add_argument("--scrapes", type=int, default=100, help="HTTP scrapes per daemon")
    ap.add_argument("--window", type=float, default=20, help="seconds top is measured")
    ap.add_argument("--only", default="synthetic,serve,top")
    a = ap.parse_args()
    log = lambda m: print(f"# {m}", file=sys.stderr, flush=True)  # noqa: E731
    res, only = {}, a.only.split(",")
    if "synthetic" in only:
        res["synthetic"] = synthetic(reps=a.reps, log=log)
    if "serve" in only:
        res["serve"] = serve(a.runs, a.scrapes, log=log)
    if "top" in only:
        res["top"] = top(a.runs, a.window, log=log)
    print("BENCH_JSON " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
