"""`lstrace serve` end to end, on this host, as root: a real Prometheus scrapes it
while a workload makes bpf() syscalls fail with known errnos on one CPU; every
dashboard panel and rule expression is evaluated by that Prometheus."""
import ctypes
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from support import (PY, ROOT, free_port, held_prog_ids, left_over, lstrace_prog_ids,
                      run_lstrace, wait_for)

pytestmark = pytest.mark.root

DASH = ROOT / "dashboards"
RULE_FILES = [DASH / "recording.yml", DASH / "alerts.yml"]
N_LOOKUPS = 1234
# In an emulated lab guest a scrape can take over a second: scrape less often
# and give rate() a window that surely holds two samples.
IN_GUEST = bool(os.environ.get("LAB_KERNEL"))
SCRAPE_S = 3 if IN_GUEST else 1
RATE_WINDOW_S = 10 * SCRAPE_S
HELPER_METRICS = ("lstrace_helper_calls_total", "lstrace_helper_failures_total",
                  "lstrace_helper_cpu_failures_total", "lstrace_helper_latency_seconds_bucket")
# "a quiet minute" before the first failure, shortened: Prometheus must hold this
# many zero samples of the series (increase() needs one before the failure)
QUIET_SAMPLES = 10


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


class Prom:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr):
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = json.loads(http_get(url))
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{expr}: {e.read().decode()}")
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]


def bpf_lookup_failures(n, cpu):
    """BPF_MAP_LOOKUP_ELEM on a missing key of a fresh hash map, n times, pinned to
    `cpu`: returns how many failed with ENOENT (the ground truth) and other errnos."""
    from lstrace import bpfsys
    fd, _ = bpfsys.bpf(bpfsys.CMD["MAP_CREATE"], struct.pack("<IIII", 1, 4, 8, 16), "MAP_CREATE")   # hash 4->8, 16
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    key, val = ctypes.create_string_buffer(4), ctypes.create_string_buffer(8)
    attr = struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0)
    enoent = other = 0
    try:
        for _ in range(n):
            try:
                bpfsys.bpf(bpfsys.MAP_LOOKUP_ELEM, attr, "MAP_LOOKUP_ELEM")
            except bpfsys.BPFError as e:
                if e.errno == 2:
                    enoent += 1
                else:
                    other += 1
    finally:
        os.sched_setaffinity(0, old)
        os.close(fd)
    return enoent, other


def scraped(lport, sel):
    """The value of one series in lstrace's own /metrics now (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families
    name, _, rest = sel.partition("{")
    want = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    for fam in text_string_to_metric_families(http_get(f"http://127.0.0.1:{lport}/metrics")):
        for smp in fam.samples:
            if smp.name == name and all(smp.labels.get(k) == v for k, v in want.items()):
                return smp.value
    return 0.0


def provoke_one_rqspinlock_deadlock(cpus, tries=200):
    """As few queued-path AA deadlocks as the repro's aa_queued program can make
    (one, nearly always): runs of one iteration on `cpus` at once until the
    program's own raw_tp on lock:contention_end saw a failure; a loaded host
    may keep the CPUs from overlapping, then runs of 2, 4, ... 16 iterations.
    Returns {cpu: failures it saw there} (the ground truth)."""
    from lstrace.repro import preflight, stats
    from lstrace.bpfcalls import prog_test_run
    from lstrace.repro.cases.base import load
    from lstrace.repro.cases.helper_calls import PKT
    from lstrace.repro.cases.rqspinlock import SEEN
    from lstrace.repro.cases.threads import on_cpus
    preflight()
    with load("rqspin") as obj:
        fd = obj.prog_fd("aa_queued")
        obj.attach("on_end")
        try:
            for i in range(tries * 5):
                repeat = min(16, 2 ** (i // tries))
                on_cpus(lambda c: (lambda _d: prog_test_run(fd, data=PKT, repeat=repeat)),
                        cpus, 0)
                seen = stats.read_groups(obj.map_fd("stats"), {"q": SEEN["aa-queued"]}, cpus)
                got = {c: v["calls"] for c, v in seen["q"].items()}
                if any(got.values()):
                    return got
        finally:
            obj.detach()
    return {}


def wait_quiet(prom, series, alert):
    """A quiet period (the issue's "quiet minute", shortened): Prometheus holds
    QUIET_SAMPLES samples of `series`, none increasing, and `alert` is not
    active.  Skips when something else on a shared host keeps it noisy."""
    def quiet():
        counts = prom.query(f"count_over_time({series}[1m])")
        return (counts and all(float(r["value"][1]) >= QUIET_SAMPLES for r in counts)
                and not prom.query(f"increase({series}[1m]) > 0")
                and not prom.query(f'ALERTS{{alertname="{alert}"}}'))
    try:
        wait_for(quiet, max(120, (QUIET_SAMPLES + 20) * SCRAPE_S), "a quiet period")
    except AssertionError:
        pytest.skip(f"not quiet: {series} increases from elsewhere on this host: "
                    f"{prom.query(f'increase({series}[1m]) > 0')}")


def first_failure_seen(prom, series, alert, cpu):
    """After the first failures on `cpu`: increase(series[1m]) > 0 and `alert`
    pending or firing.  Returns what it saw, for the log."""
    one = series.replace("}", f',cpu="{cpu}"}}') if 'cpu="' not in series else series
    inc = wait_for(lambda: float((prom.query(f"increase({one}[1m])") or [{"value": [0, 0]}])
                                 [0]["value"][1]), 20 * SCRAPE_S, f"increase({one}[1m]) > 0")
    active = wait_for(lambda: prom.query(f'ALERTS{{alertname="{alert}",cpu="{cpu}"}}'),
                      20 * SCRAPE_S, alert)
    state = active[0]["metric"]["alertstate"]
    assert state in ("pending", "firing")
    return f"increase[1m] = {inc:.2f}, {alert} {state}"


def maybe_rqspinlock_repro():
    try:
        from lstrace.repro import run_case
    except ImportError:
        return "lstrace.repro.run_case is not there yet: no rqspinlock failures generated"
    try:
        run_case("rqspinlock")
    except Exception as e:       # noqa: BLE001 - reported as the reason
        return f"run_case('rqspinlock') failed: {e}"
    return None


def helper_workloads(prom, cpu):
    """Where helper probes attach (the lab guests): repro's helper-calls and,
    on kernels with busy counters, task-busy, pinned to `cpu`; Prometheus
    must end up holding exactly the calls and busy failures the workloads
    counted themselves.  Returns what was compared, for the log."""
    from lstrace import probes
    from lstrace.repro import CASES, run_case
    func_probe = {p.func: p.name for p in probes.HELPERS}
    calls = run_case("helper-calls", cpus=[cpu], n=300, nulls=120, deletes=5, kinds=("task",))
    get = func_probe[next(f for f in calls.functions if "storage_get" in f)]
    want_calls = calls.groups["bpf_task_storage_get"][cpu]["calls"]
    want_busy, first = 0, ""
    if CASES["task-busy"].check() is None:       # generations A/B: provoke busy failures
        # the first ones after a quiet period: short runs until one made a busy failure
        series = f'lstrace_helper_cpu_failures_total{{reason="busy",cpu="{cpu}"}}'
        wait_quiet(prom, series, "LstraceHelperBusy")
        for _ in range(20):
            busy = run_case("task-busy", duration=0.03, cpus=[cpu], kinds=("task",), cpu=cpu)
            want_calls += busy.groups["bpf_task_storage_get"][cpu]["calls"]
            want_busy += sum(per[cpu]["busy"] for g, per in busy.groups.items()
                             if not g.startswith("hammer"))
            if want_busy:
                break
        assert want_busy > 0, busy.verdict
        first = first_failure_seen(prom, series, "LstraceHelperBusy", cpu)
    got = {}
    for name, sel, want in (
            ("calls", f'lstrace_helper_calls_total{{probe="{get}",cpu="{cpu}"}}', want_calls),
            ("busy", f'sum(lstrace_helper_cpu_failures_total{{reason="busy",cpu="{cpu}"}})',
             want_busy)):
        def value(sel=sel, want=want):
            r = prom.query(sel)
            return r and float(r[0]["value"][1]) >= want and float(r[0]["value"][1])
        got[name] = (wait_for(value, 20 * SCRAPE_S, sel) if want
                     else float(prom.query(sel)[0]["value"][1]))
        assert got[name] == want, (sel, got[name], want)
    return f"{get} on cpu {cpu}: {got} == ground truth; first {want_busy} busy: {first}"


def expressions():
    """(where, expr) of every dashboard target and every rule, variables substituted."""
    d = json.loads((DASH / "lstrace.json").read_text())
    subst = {"$__rate_interval": f"{RATE_WINDOW_S}s", "$__range": f"{6 * RATE_WINDOW_S}s",
             "$job": ".*", "$instance": ".*",
             "$cpu": ".*",
             "$probe": ".*"}
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            e = t["expr"]
            for k, v in subst.items():
                e = e.replace(k, v)
            assert "$" not in e, e
            out.append((f"panel {p['title']!r} {t['refId']}", e))
    import yaml
    for f in RULE_FILES:
        for g in yaml.safe_load(f.read_text())["groups"]:
            for r in g["rules"]:
                out.append((f"{f.name} {r.get('alert') or r.get('record')}", r["expr"],))
    return out


@pytest.fixture
def served(tmp_path):
    lport, pport = free_port(), free_port()
    proc = subprocess.Popen([PY, "-m", "lstrace", "serve", "--listen", f"127.0.0.1:{lport}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    prom = None
    mine = set()
    try:
        # BCC compiles ~30x slower in an emulated lab guest
        wait_for(lambda: "lstrace_build_info" in http_get(f"http://127.0.0.1:{lport}/metrics"),
                 180 if os.environ.get("LAB_KERNEL") else 30, "lstrace serve")
        mine = held_prog_ids(proc.pid) & lstrace_prog_ids()
        assert mine, "lstrace serve holds no program"
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(
            f"global: {{scrape_interval: {SCRAPE_S}s, scrape_timeout: {SCRAPE_S}s, "
            f"evaluation_interval: {SCRAPE_S}s}}\n"
            f"rule_files: [{', '.join(str(f) for f in RULE_FILES)}]\n"
            "scrape_configs:\n"
            f"  - job_name: lstrace\n    static_configs: [{{targets: ['127.0.0.1:{lport}']}}]\n")
        prom = subprocess.Popen(["prometheus", f"--config.file={cfg}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{pport}",
                                 "--log.level=warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: http_get(f"http://127.0.0.1:{pport}/-/ready"), 30, "prometheus ready")
        yield proc, lport, Prom(pport)
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(10)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    assert not wait_gone(mine), "lstrace programs left attached"


def wait_gone(ids, timeout=5.0):
    end = time.monotonic() + timeout
    while (ids & lstrace_prog_ids()) and time.monotonic() < end:
        time.sleep(0.2)
    return ids & lstrace_prog_ids()


def test_prometheus_scrapes_ground_truth_and_every_expression(served):
    proc, lport, prom = served
    cpu = max(os.sched_getaffinity(0))
    # bpf() errors are summed over CPUs: the workload's share is what it adds
    sel = 'lstrace_bpf_syscall_errors_total{cmd="MAP_LOOKUP_ELEM",errno="ENOENT",map_type="hash"}'
    before = scraped(lport, sel)
    enoent, other = bpf_lookup_failures(N_LOOKUPS, cpu)
    assert (enoent, other) == (N_LOOKUPS, 0)
    after = scraped(lport, sel)
    assert after - before == enoent, (before, after, enoent)
    rq_skip = maybe_rqspinlock_repro()
    helpers_on = re.findall(r'^lstrace_probe_attached\{[^}]*probe="task_storage_get[^}]*\} 1',
                            http_get(f"http://127.0.0.1:{lport}/metrics"), re.M)
    print(f"\nhelper probes attached: {len(helpers_on)}")
    if helpers_on:
        print(helper_workloads(prom, cpu))

    def value():
        r = prom.query(sel)
        return r and float(r[0]["value"][1]) >= after and float(r[0]["value"][1])
    got = wait_for(value, 20 * SCRAPE_S, sel)
    print(f"\nground truth {enoent} ENOENT lookups on cpu {cpu}: lstrace counted "
          f"{after - before:g} more; Prometheus holds {got:g} (lstrace's {after:g} or later)")
    assert got >= after

    text = http_get(f"http://127.0.0.1:{lport}/metrics")
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["promtool", "check", "rules", *map(str, RULE_FILES)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

    # absent metrics must be explained by this host: which probes attached, what happened
    present = set(re.findall(r"^(lstrace_\w+?)(?:\{| )", text, re.M))
    explained = {}
    if not any(m in present for m in HELPER_METRICS):
        att = prom.query('lstrace_probe_attached{probe=~"task_storage.*|cgrp_storage.*|'
                         'inode_storage.*|sk_storage.*|local_storage.*|selem.*"} == 1')
        assert att == [], "helper probes attached but no helper series"
        for m in HELPER_METRICS:
            explained[m] = "no helper probe can attach on this kernel (fentry/kprobe forbidden)"
    if not prom.query('lstrace_probe_attached{probe="rqspinlock"} == 1'):
        for m in ("lstrace_rqspinlock_failures_total", "lstrace_rqspinlock_cpu_failures_total",
                  "lstrace_rqspinlock_wait_seconds_bucket", "lstrace_rqspinlock_view_info",
                  "lstrace_rqspinlock_unseen_failures_total"):
            explained[m] = "rqspinlock probe not attached (kernel before 6.15)"
    else:       # zero series from the start, failures or not
        assert {"lstrace_rqspinlock_failures_total",
                "lstrace_rqspinlock_cpu_failures_total"} <= present, rq_skip
    for m in ("lstrace_helper_latency_seconds_bucket", "lstrace_rqspinlock_wait_seconds_bucket"):
        if m not in present:      # issue 11: histograms only with serve --latency
            explained.setdefault(m, "latency histograms are opt-in (serve --latency)")
    if "lstrace_probe_blind_spot" not in present:     # e.g. 6.12 in fentry mode
        # no kprobe-mode helper, no rqspinlock tracepoint: nothing these modes cannot see
        assert prom.query('lstrace_probe_attached{mode="kprobe"} == 1 or '
                          'lstrace_probe_attached{probe="rqspinlock"} == 1') == []
        explained["lstrace_probe_blind_spot"] = "no attached probe has a blind spot here"
    if not prom.query('lstrace_map_probe_info == 1'):       # serve runs the defaults
        for m in ("lstrace_map_cpu_failures_total", "lstrace_map_probe_info"):
            explained[m] = "map probes are opt-in (--probes +maps)"
    for m in ("lstrace_busy_samples_total", "lstrace_busy_held_samples_total"):
        if m not in present:
            assert prom.query('lstrace_probe_attached{probe="busy_sampler"} == 1') == []
            explained[m] = "busy_sampler unavailable on this kernel"

    time.sleep(3 * SCRAPE_S)     # a few more scrapes: every rate window holds >= 2 samples
    skipped, checked = [], 0
    for where, expr in expressions():
        result = prom.query(expr)
        used = set(re.findall(r"\blstrace_\w+", expr)) - {"lstrace_"}
        missing = {m for m in used if not m.startswith("lstrace:") and m not in present}
        if where.startswith("alerts.yml"):
            # alert expressions are empty while healthy: each metric they read must exist
            assert not (missing - set(explained)), (where, missing)
            continue
        if missing:
            assert missing <= set(explained), (where, missing)
            skipped.append((where, sorted(explained[m] for m in missing)[0]))
            continue
        assert result, f"{where}: no data for {expr}"
        checked += 1
    assert prom.query("lstrace:bpf_syscall_errors:rate5m"), "recording rule produced nothing"
    # every rule evaluated without error inside Prometheus
    rules = json.loads(http_get(prom.base + "/api/v1/rules"))["data"]["groups"]
    bad = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"]
           if r.get("health") not in ("ok", "unknown")]
    assert not bad, bad
    print(f"{checked} expressions returned data; skipped (explained): "
          + "; ".join(f"{w}: {why}" for w, why in skipped))
    assert checked >= 6


def by_program(lport):
    """{(program, probe, reason): n} of lstrace_helper_failures_by_program_total now,
    and {(probe, reason): n} of the failure counters it must sum to."""
    from prometheus_client.parser import text_string_to_metric_families
    by, counters = {}, {}
    reason = {"EDEADLK": "deadlock", "ETIMEDOUT": "timeout"}
    for fam in text_string_to_metric_families(http_get(f"http://127.0.0.1:{lport}/metrics")):
        for smp in fam.samples:
            lb = smp.labels
            if smp.name == "lstrace_helper_failures_by_program_total":
                by[(lb["program"], lb["probe"], lb["reason"])] = smp.value
            elif smp.name == "lstrace_rqspinlock_failures_total":
                k = ("rqspinlock", reason[lb["errno"]])
                counters[k] = counters.get(k, 0) + smp.value
            elif smp.name == "lstrace_helper_failures_total" and lb["reason"] != "not_found":
                counters[(lb["probe"], lb["reason"])] = smp.value
    return by, counters


def test_failures_by_program_name_the_failing_program(served):
    """Issue 13 item 5: rqspinlock failures of the repro's aa_queued program
    (a tc program run by BPF_PROG_TEST_RUN) are counted under its name; summed
    over programs (the lost ones under "unattributed") the metric equals the
    failure counters."""
    proc, lport, prom = served
    from lstrace.repro import CASES
    if CASES["rqspinlock"].check():
        pytest.skip(f"no rqspinlock here: {CASES['rqspinlock'].check()}")
    from lstrace.repro import preflight, stats
    from lstrace.bpfcalls import prog_test_run
    from lstrace.repro.cases.base import load
    from lstrace.repro.cases.helper_calls import PKT
    from lstrace.repro.cases.rqspinlock import SEEN
    from lstrace.repro.cases.threads import on_cpus

    def named():
        by, _ = by_program(lport)
        names = {p for (p, probe, _), v in by.items() if probe == "rqspinlock" and v}
        return "aa_queued" in names and names
    # lstrace names a program from the BPF symbols it re-reads when a scrape finds
    # new failures, so the program must still be loaded then (`lstrace repro`
    # unloads its programs at once, and its busy vCPUs can starve the scrapes of a
    # short run): queued-path AA deadlocks from the repro's aa_queued program,
    # a few at a time, while the program stays loaded until lstrace named it.
    preflight()
    cpus = sorted(os.sched_getaffinity(0))[:2]
    visible, names = 0, None
    with load("rqspin") as obj:
        fd = obj.prog_fd("aa_queued")
        obj.attach("on_end")
        try:
            # a loaded machine may take several scrapes (and symbol re-reads) to
            # name it: keep provoking until named, within one overall deadline
            end = time.monotonic() + 60 * SCRAPE_S
            while not names and time.monotonic() < end:
                on_cpus(lambda c: (lambda _d: prog_test_run(fd, data=PKT, repeat=4)), cpus, 0)
                seen = stats.read_groups(obj.map_fd("stats"), {"q": SEEN["aa-queued"]}, cpus)
                visible = sum(v["calls"] for v in seen["q"].values())
                stop = time.monotonic() + 5 * SCRAPE_S
                while visible and not names and time.monotonic() < stop:
                    assert proc.poll() is None, f"lstrace serve exited with {proc.returncode}"
                    try:
                        names = named()
                    except OSError:
                        pass
                    time.sleep(0.2)
        finally:
            obj.detach()
    assert visible, "no queued-path AA deadlock provoked"
    assert names, f"no failure under the program's name: {by_program(lport)[0]}"
    print(f"\nprogram names with rqspinlock failures: {sorted(names)}")

    def consistent():           # the ring read after the failures: nothing pending
        by, counters = by_program(lport)
        sums = {}
        for (_, probe, reason), v in by.items():
            sums[(probe, reason)] = sums.get((probe, reason), 0) + v
        bad = {k: (sums.get(k, 0), n) for k, n in counters.items() if sums.get(k, 0) != n}
        return not bad and (by, counters)
    by, counters = wait_for(consistent, 20 * SCRAPE_S, "by-program sums == failure counters",
                            proc)
    lost = scraped(lport, "lstrace_failure_events_lost_total")
    un = sum(v for (p, _, _), v in by.items() if p == "unattributed")
    assert un <= lost
    mine = {k: v for k, v in by.items() if k[0] == "aa_queued" and v}
    print(f"\naa_queued made {visible} failures visible at contention_end; by program: {mine}; "
          f"unattributed {un:g} (ring lost {lost:g}); counters {counters}")


def test_first_rqspinlock_deadlock_alerts(served):
    """Issue 12: after a quiet period, one single deadlock on a CPU is seen by
    increase(...[1m]) and fires LstraceRqspinlockDeadlock (dashboards/alerts.yml):
    the per-CPU series exists with 0 before the first failure."""
    _proc, _lport, prom = served
    from lstrace.repro import CASES
    if CASES["rqspinlock"].check():
        pytest.skip(CASES["rqspinlock"].check())
    att = wait_for(lambda: prom.query('lstrace_probe_attached{probe="rqspinlock"}'),
                   20 * SCRAPE_S, "first scrape")
    if att[0]["value"][1] != "1":
        pytest.skip("rqspinlock probe not attached")
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        pytest.skip("aa_queued needs two CPUs")
    series = 'lstrace_rqspinlock_cpu_failures_total{errno="EDEADLK"}'
    wait_quiet(prom, series, "LstraceRqspinlockDeadlock")
    before = {r["metric"]["cpu"]: float(r["value"][1]) for r in prom.query(series)}

    truth = provoke_one_rqspinlock_deadlock(cpus)
    assert truth, "aa_queued made no queued-path deadlock"
    cpu = next(c for c, n in truth.items() if n)
    seen = first_failure_seen(prom, series, "LstraceRqspinlockDeadlock", cpu)
    got = float(prom.query(series.replace("}", f',cpu="{cpu}"}}'))[0]["value"][1])
    print(f"\n{sum(truth.values())} deadlock(s) provoked after {QUIET_SAMPLES} quiet scrapes "
          f"({truth}); Prometheus: +{got - before[str(cpu)]:g} on cpu {cpu}, {seen}")
    assert got - before[str(cpu)] == truth[cpu]


def test_bpf_lock_error_series_exist_before_any_failure(served):
    """The bpf() lock errors LstraceBpfSyscallLockError reads are there with 0
    from the first scrape, so its first occurrence counts (this host cannot
    make a bpf() map call fail on a lock)."""
    _proc, _lport, prom = served
    sel = ('lstrace_bpf_syscall_errors_total{errno=~"EBUSY|EDEADLK|ETIMEDOUT",'
           'cmd=~"MAP_UPDATE_ELEM|MAP_DELETE_ELEM"}')
    from lstrace.probes import bpf_syscall
    want = (len(bpf_syscall.SYS_LOCK_ERRNOS) * len(bpf_syscall.SYS_LOCK_CMDS)
            * len(bpf_syscall.SYS_LOCK_MAP_TYPES))
    got = wait_for(lambda: prom.query(sel), 20 * SCRAPE_S, sel)
    assert len(got) >= want


def test_sigterm_detaches_and_exits_0(served):
    proc, _lport, _prom = served
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    rc = proc.wait(15)
    assert rc == 0, proc.stderr.read()
    assert time.monotonic() - t0 < 10
    assert "Traceback" not in proc.stderr.read()


def test_once_and_textfile(tmp_path):
    r = run_lstrace("serve", "--once", "--probes", "bpf_syscall", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "lstrace_probe_attached" in r.stdout and 'probe="bpf_syscall"' in r.stdout
    out = tmp_path / "lstrace.prom"
    before = lstrace_prog_ids()
    p = subprocess.Popen([PY, "-m", "lstrace", "serve", "--textfile", str(out),
                          "--interval", "0.5", "--probes", "bpf_syscall"], cwd=ROOT,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: out.exists() and "lstrace_build_info" in out.read_text(), 30,
                 "textfile")
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(15) == 0, p.stderr.read()
    assert not left_over(before)


def _bad(args, code, words):
    before = lstrace_prog_ids()
    r = run_lstrace("serve", *args, timeout=60)
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstrace: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert not left_over(before), "bad input left programs attached"


def test_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        _bad(["--listen", f"127.0.0.1:{s.getsockname()[1]}"], 75, ["already in use"])


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999", "::1:80", "10.1.2.3.4:80"])
def test_bad_listen(listen):
    _bad(["--listen", listen], 2, ["--listen"])


def test_unwritable_textfile(tmp_path):
    _bad(["--textfile", "/nonexistent-dir/lstrace.prom"], 73, ["--textfile"])
    _bad(["--textfile", str(tmp_path)], 73, ["directory"])


def test_unknown_probe():
    _bad(["--probes", "bpf_syscall,nosuchprobe"], 2, ["nosuchprobe"])
