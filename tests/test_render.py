"""`lstrace top` rendering from hand-built snapshots (no BPF, no root)."""
import json
import subprocess
import sys

from lstrace import render
from lstrace.layout import NSLOTS
from lstrace.render import top_model, top_text
from lstrace.snapshot import FailureEvent, ProbeStatus, Snapshot

PROBES = [ProbeStatus("task_storage_get", "helper", "fentry", True, "", "bpf_task_storage_get"),
          ProbeStatus("cgrp_storage_get", "helper", "unavailable", False, "no such function"),
          ProbeStatus("rqspinlock", "tracepoint", "tracepoint", True),
          ProbeStatus("bpf_syscall", "tracepoint", "tracepoint", True)]

CPU_KEYS = {"cpu", "calls_per_s", "busy_per_s", "deadlock_per_s", "timeout_per_s",
            "failures_per_s", "syscall_errors_per_s", "aa_per_s", "abba_per_s", "nmi_per_s",
            "failure_ratio", "worst_probe"}
PROBE_KEYS = {"probe", "mode", "kind", "calls_per_s", "failures_per_s", "calls_total",
              "failures_total", "busy_total", "deadlock_total", "timeout_total", "reason"}
TOP_KEYS = {"time", "interval_s", "uptime_s", "kernel", "attach", "unavailable", "cpus", "total", "probes",
            "sources", "rqspinlock", "syscall_errors", "blind_spots"}


def snap(taken, get0, get1, rq=0, sys_err=0, events=()):
    """get0/get1: {outcome: n} of task_storage_get on CPU 0 / 1."""
    s = Snapshot(taken=taken, cpus=[0, 1], kernel={"release": "6.18.44", "generation": "B"},
                 probes=PROBES, started=100.0)
    s.helper[("task_storage_get", 0)] = dict(get0)
    s.helper[("task_storage_get", 1)] = dict(get1)
    s.latency[("task_storage_get", 0)] = [0] * NSLOTS
    s.latency[("task_storage_get", 1)] = [0] * NSLOTS
    s.rq_wait = {0: [0] * NSLOTS, 1: [0] * NSLOTS}
    s.rq_wait[1][10] = rq * 3
    if rq:
        s.rq_failures[(1, "ETIMEDOUT", "unknown", "htab")] = rq
    if sys_err:
        s.syscall_errors[(0, "MAP_LOOKUP_ELEM", "hash", "ENOENT")] = sys_err
    s.events = list(events)
    return s


def ev(seq, cpu, outcome="busy", comm="worker", source="task_storage_get"):
    return FailureEvent(seq, cpu, seq * 10, source, outcome, comm, "my_prog", "do_thing")


OLD = snap(101.0, {"ok": 100, "busy": 0}, {"ok": 50, "busy": 5}, events=[ev(1, 1)])
NEW = snap(103.0, {"ok": 300, "busy": 0}, {"ok": 70, "busy": 45}, rq=4, sys_err=10,
           events=[ev(1, 1), ev(2, 1), ev(3, 1, comm="other"), ev(4, 1, outcome="timeout",
                                                                   source="rqspinlock"), ev(5, 1)])


def test_rates_from_two_snapshots():
    m = top_model(NEW, OLD, now=0)
    assert m["interval_s"] == 2.0 and m["uptime_s"] == 3.0
    c0, c1 = m["cpus"]
    assert c0["cpu"] == 0 and c0["calls_per_s"] == 100.0 and c0["busy_per_s"] == 0
    assert c0["syscall_errors_per_s"] == 5.0 and c0["worst_probe"] == "bpf_syscall"
    # CPU 1: 20 ok + 40 busy in 2 s; rqspinlock timeouts 4 in 2 s
    assert c1["calls_per_s"] == 30.0 and c1["busy_per_s"] == 20.0
    assert c1["timeout_per_s"] == 2.0 and c1["failures_per_s"] == 22.0
    assert c1["failure_ratio"] == round(44 / 60, 6)
    assert c1["worst_probe"] == "task_storage_get"
    t = m["total"]
    assert t["cpu"] == "total" and t["calls_per_s"] == 130.0 and t["failures_per_s"] == 22.0
    assert t["failure_ratio"] == round(44 / 260, 6)


def test_probe_rows_and_totals():
    m = top_model(NEW, OLD, now=0)
    rows = {r["probe"]: r for r in m["probes"]}
    assert [r["probe"] for r in m["probes"]] == [p.name for p in PROBES]
    g = rows["task_storage_get"]
    assert (g["mode"], g["calls_per_s"], g["failures_per_s"]) == ("fentry", 130.0, 20.0)
    assert (g["calls_total"], g["failures_total"], g["busy_total"]) == (415, 45, 45)
    assert rows["cgrp_storage_get"]["mode"] == "unavailable"
    assert rows["cgrp_storage_get"]["reason"] == "no such function"
    rq = rows["rqspinlock"]
    assert (rq["calls_total"], rq["failures_total"], rq["timeout_total"]) == (12, 4, 4)
    assert rq["calls_per_s"] == 6.0 and rq["failures_per_s"] == 2.0
    sc = rows["bpf_syscall"]
    assert sc["calls_per_s"] is None and sc["failures_total"] == 10


def test_sources_only_from_last_interval():
    m = top_model(NEW, OLD, now=0)
    src = m["sources"]
    assert src[0] == {"comm": "worker", "program": "my_prog", "caller": "do_thing",
                      "source": "task_storage_get", "outcome": "busy", "cpus": [1], "count": 2}
    assert sum(r["count"] for r in src) == 4     # event seq 1 was in the older snapshot
    assert m["rqspinlock"] == [{"cpu": 1, "errno": "ETIMEDOUT", "kind": "unknown",
                                "caller": "htab", "per_s": 2.0, "total": 4}]
    assert m["syscall_errors"] == [{"cpu": 0, "cmd": "MAP_LOOKUP_ELEM", "map_type": "hash",
                                    "errno": "ENOENT", "per_s": 5.0, "total": 10}]


def test_json_keys_are_the_documented_ones():
    from lstrace import top
    m = json.loads(json.dumps(top.model(NEW, OLD)))      # what top --json prints
    assert set(m) == TOP_KEYS
    for k in TOP_KEYS:
        assert any(f"    {k} " in d or f"    {k}\n" in d for d in (render.__doc__, top.__doc__))
    assert set(m["kernel"]) == {"release", "generation"}
    assert set(m["attach"]) == {"attached", "total", "modes"}
    assert m["attach"] == {"attached": 3, "total": 4,
                           "modes": {"fentry": 1, "tracepoint": 2, "unavailable": 1}}
    for row in m["cpus"] + [m["total"]]:
        assert set(row) == CPU_KEYS
    for row in m["probes"]:
        assert set(row) == PROBE_KEYS
    for row in m["sources"]:
        assert set(row) == {"comm", "program", "caller", "source", "outcome", "cpus", "count"}
    assert set(m["rqspinlock"][0]) == {"cpu", "errno", "kind", "caller", "per_s", "total"}
    assert set(m["syscall_errors"][0]) == {"cpu", "cmd", "map_type", "errno", "per_s", "total"}


def _table_rows(text, title):
    lines = text.splitlines()
    i = lines.index(title)
    header = lines[i + 1]
    rows = []
    for line in lines[i + 3:]:
        if not line.strip():
            break
        rows.append(line)
    return header, rows


def test_column_order_and_header():
    text = top_text(top_model(NEW, OLD, now=0))
    first = text.splitlines()[0]
    assert "6.18.44" in first and "generation B" in first
    assert "probes 3/4 attached (1 fentry, 2 tracepoint, 1 unavailable)" in first
    assert "up 0:00:03" in first
    header, rows = _table_rows(text, "Per CPU")
    cols = header.split()
    assert cols == ["CPU", "calls/s", "busy/s", "deadlock/s", "AA/s", "ABBA/s", "NMI/s",
                    "timeout/s", "fail/s", "sys_err/s", "fail%", "worst", "probe"]
    assert [r.split()[-12] for r in rows] == ["0", "1", "total"]
    assert rows[1].split() == ["!", "1", "30", "20", "0", "0", "0", "0", "2", "22", "0", "73.33%",
                               "task_storage_get"]
    header, rows = _table_rows(text, "Per probe point")
    assert header.split()[:4] == ["probe", "mode", "calls/s", "fail/s"]


def test_sorting():
    m = top_model(NEW, OLD, now=0)
    def order(sort):
        _h, rows = _table_rows(top_text(m, sort=sort), "Per CPU")
        return [r.lstrip("! ").split()[0] for r in rows]
    assert order("cpu") == ["0", "1", "total"]
    assert order("calls") == ["0", "1", "total"]        # 100/s > 30/s
    assert order("failures") == ["1", "0", "total"]     # 22/s > 5/s
    assert order("ratio") == ["1", "0", "total"]
    _h, rows = _table_rows(top_text(m, sort="failures"), "Per probe point")
    assert rows[0].split()[1] == "task_storage_get"
    # focus per probe puts the probe table first
    lines = top_text(m, focus="probe").splitlines()
    assert lines.index("Per probe point") < lines.index("Per CPU")
    assert render.SORTS == ("cpu", "calls", "failures", "ratio")


def test_failures_stand_out():
    m = top_model(NEW, OLD, now=0)
    plain = top_text(m, color=False)
    assert "\x1b[" not in plain
    _h, rows = _table_rows(plain, "Per CPU")
    assert [r.startswith("!") for r in rows] == [True, True, True]
    coloured = top_text(m, color=True)
    assert render.ANSI_HI in coloured
    quiet = top_model(OLD, OLD, now=0)
    assert render.ANSI_HI not in top_text(quiet, color=True)
    assert all(r["failure_ratio"] is None or r["failure_ratio"] == 0 for r in quiet["cpus"])


def test_no_colour_without_tty():
    # render through the same code path `top` uses when stdout is a pipe
    code = ("import sys; sys.path.insert(0, 'tests'); from test_render import NEW, OLD;"
            "from lstrace import render;"
            "print(render.top_text(render.top_model(NEW, OLD), color=sys.stdout.isatty()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "\x1b[" not in out and "Per CPU" in out


def test_top_footer_names_every_blind_spot_once():
    """top's footer line (and --json "blind_spots"): what the attached probes
    cannot see on this kernel, each blind spot once with its probes."""
    from lstrace import top
    probes = [ProbeStatus("task_storage_get", "helper", "kprobe", True,
                          blind_spots=("bpf_prog_active", "syscall_tracepoint_programs")),
              ProbeStatus("cgrp_storage_get", "helper", "kprobe", True,
                          blind_spots=("bpf_prog_active", "syscall_tracepoint_programs")),
              ProbeStatus("rqspinlock", "tracepoint", "tracepoint", True,
                          "blind spots: pending_path, pending_timeout"),
              ProbeStatus("bpf_syscall", "tracepoint", "tracepoint", True, blind_spots=())]
    a = snap(100.0, {"ok": 1}, {"ok": 1})
    a.probes = probes
    m = top.model(a, a)
    assert [g["blind_spot"] for g in m["blind_spots"]] == [
        "bpf_prog_active", "syscall_tracepoint_programs", "pending_path", "pending_timeout"]
    json.dumps(m)
    line = top.footer(m)
    assert line.count("bpf_prog_active") == 1 and "pending_timeout" in line
    assert "task_storage_get, cgrp_storage_get: bpf_prog_active, syscall_tracepoint_programs" \
        in line and "rqspinlock: pending_path, pending_timeout" in line
    a.probes = [ProbeStatus("bpf_syscall", "tracepoint", "tracepoint", True, blind_spots=())]
    assert top.footer(top.model(a, a)) == ""
