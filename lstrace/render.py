"""Pure rendering for `lstrace top`: snapshots in, a model / text out.

Nothing here touches BPF: `top_model(cur, prev)` turns two snapshots into a
plain, JSON-ready dict (the `--json` output, keys below), and `top_lines()`
renders that dict into (text, highlighted) lines for the terminal.

JSON object (one per interval; every key is always present):

    time            wall-clock UNIX time of the newer snapshot
    interval_s      seconds between the two snapshots
    uptime_s        seconds since the probes were attached
    kernel          {"release", "generation"}
    attach          {"attached", "total", "modes": {mode: n}}
    unavailable     [{"kind", "reason", "probes": [names]}]: one entry per reason
    cpus            [row], one per CPU; row = {"cpu", "calls_per_s", "busy_per_s",
                    "deadlock_per_s", "timeout_per_s", "failures_per_s",
                    "syscall_errors_per_s", "failure_ratio" (null when no calls),
                    "worst_probe" (null when nothing failed)}
    total           the same row summed over CPUs, "cpu": "total"
    probes          [{"probe", "mode", "kind", "calls_per_s", "failures_per_s",
                    "calls_total", "failures_total", "busy_total", "deadlock_total",
                    "timeout_total", "reason"}]; calls of rqspinlock are contended
                    waits, bpf_syscall has only failures (calls are null); kind is
                    "helper", "tracepoint" or "map" (--probes +maps: hash-map ops,
                    also summed into the per-CPU rows)
    sources         [{"comm", "program", "caller", "source", "outcome", "cpus", "count"}]
                    failure events recorded during the interval, most first
    rqspinlock      [{"cpu", "errno", "kind", "caller", "per_s", "total"}]
    syscall_errors  [{"cpu", "cmd", "map_type", "errno", "per_s", "total"}]
"""
import time

from tabulate import tabulate

from . import probes, reasons

RATE_KEYS = ("calls", "busy", "deadlock", "timeout", "failures", "syscall_errors")
SORTS = ("cpu", "calls", "failures", "ratio")
FOCUS = ("cpu", "probe")
ANSI_HI, ANSI_OFF = "\x1b[1;31m", "\x1b[0m"


def _rate(n, secs):
    return round(n / secs, 2) if secs > 0 else 0.0


def _per_cpu_failures(snap):
    """cpu -> {probe: failures} for helper probes, rqspinlock and bpf_syscall."""
    out = {cpu: {} for cpu in snap.cpus}
    for (probe, cpu), _counts in snap.helper.items():
        n = snap.failures(probe, cpu)
        if n and cpu in out:
            out[cpu][probe] = out[cpu].get(probe, 0) + n
    for (cpu, _e, _k, _c), n in snap.rq_failures.items():
        if n and cpu in out:
            out[cpu]["rqspinlock"] = out[cpu].get("rqspinlock", 0) + n
    for (cpu, _cmd, _mt, _e), n in snap.syscall_errors.items():
        if n and cpu in out:
            out[cpu]["bpf_syscall"] = out[cpu].get("bpf_syscall", 0) + n
    return out


def _worst(fails):
    if not fails:
        return None
    return sorted(fails.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def cpu_rows(delta, secs):
    totals = delta.per_cpu_totals()
    fails = _per_cpu_failures(delta)
    rows = []
    sums = {k: 0 for k in RATE_KEYS}
    all_fails = {}
    for cpu in delta.cpus:
        t = dict(totals.get(cpu, {}))
        t["syscall_errors"] = sum(n for (c, *_r), n in delta.syscall_errors.items() if c == cpu)
        for k in RATE_KEYS:
            sums[k] += t.get(k, 0)
        for p, n in fails[cpu].items():
            all_fails[p] = all_fails.get(p, 0) + n
        rows.append(_row(cpu, t, secs, _worst(fails[cpu])))
    return rows, _row("total", sums, secs, _worst(all_fails))


def _row(cpu, t, secs, worst):
    row = {"cpu": cpu}
    for k in RATE_KEYS:
        row[f"{k}_per_s"] = _rate(t.get(k, 0), secs)
    calls = t.get("calls", 0)
    row["failure_ratio"] = round(t.get("failures", 0) / calls, 6) if calls else None
    row["worst_probe"] = worst
    return row


def probe_rows(cur, delta, secs):
    rows = []
    for st in cur.probes:
        kind = "map" if probes.is_map_probe(st.name) else st.kind    # --probes +maps
        r = {"probe": st.name, "mode": st.mode, "kind": kind,
             "calls_per_s": 0.0, "failures_per_s": 0.0, "calls_total": 0, "failures_total": 0,
             "busy_total": 0, "deadlock_total": 0, "timeout_total": 0,
             "reason": st.reason if not st.attached else ""}
        if st.kind == "helper":
            def agg(snap, what=None):
                return sum((snap.failures(st.name, c, what) if what != "calls"
                            else snap.calls(st.name, c)) for c in snap.cpus)
            r["calls_per_s"] = _rate(agg(delta, "calls"), secs)
            r["failures_per_s"] = _rate(agg(delta), secs)
            r["calls_total"], r["failures_total"] = agg(cur, "calls"), agg(cur)
            for o in ("busy", "deadlock", "timeout"):
                r[f"{o}_total"] = agg(cur, o)
        elif st.name == "rqspinlock":
            r["calls_per_s"] = _rate(sum(sum(v) for v in delta.rq_wait.values()), secs)
            r["calls_total"] = sum(sum(v) for v in cur.rq_wait.values())
            r["failures_per_s"] = _rate(sum(delta.rq_failures.values()), secs)
            r["failures_total"] = sum(cur.rq_failures.values())
            r["deadlock_total"] = sum(n for k, n in cur.rq_failures.items() if k[1] == "EDEADLK")
            r["timeout_total"] = sum(n for k, n in cur.rq_failures.items() if k[1] == "ETIMEDOUT")
        elif st.name == "bpf_syscall":
            r["calls_per_s"] = r["calls_total"] = None
            r["failures_per_s"] = _rate(sum(delta.syscall_errors.values()), secs)
            r["failures_total"] = sum(cur.syscall_errors.values())
            r["busy_total"] = sum(n for k, n in cur.syscall_errors.items() if k[3] == "EBUSY")
            r["deadlock_total"] = sum(n for k, n in cur.syscall_errors.items()
                                      if k[3] == "EDEADLK")
            r["timeout_total"] = sum(n for k, n in cur.syscall_errors.items()
                                     if k[3] == "ETIMEDOUT")
        else:
            r["calls_per_s"] = r["calls_total"] = None
        rows.append(r)
    return rows


def source_rows(delta, limit=10):
    groups = {}
    for e in delta.events:
        key = (e.comm, e.program, e.caller, e.source, e.outcome)
        n, cpus = groups.get(key, (0, set()))
        groups[key] = (n + 1, cpus | {e.cpu})
    rows = [{"comm": k[0], "program": k[1], "caller": k[2], "source": k[3], "outcome": k[4],
             "cpus": sorted(c), "count": n} for k, (n, c) in groups.items()]
    rows.sort(key=lambda r: (-r["count"], r["source"], r["comm"]))
    return rows[:limit]


def rq_rows(cur, delta, secs):
    rows = [{"cpu": cpu, "errno": err, "kind": kind, "caller": caller,
             "per_s": _rate(delta.rq_failures.get((cpu, err, kind, caller), 0), secs),
             "total": n}
            for (cpu, err, kind, caller), n in cur.rq_failures.items() if n]
    rows.sort(key=lambda r: (-r["per_s"], -r["total"], r["cpu"], r["errno"]))
    return rows


def sys_rows(cur, delta, secs):
    rows = [{"cpu": cpu, "cmd": cmd, "map_type": mt, "errno": err,
             "per_s": _rate(delta.syscall_errors.get((cpu, cmd, mt, err), 0), secs), "total": n}
            for (cpu, cmd, mt, err), n in cur.syscall_errors.items() if n]
    rows.sort(key=lambda r: (-r["per_s"], -r["total"], r["cpu"], r["cmd"]))
    return rows


def attach_summary(probes):
    modes = {}
    for p in probes:
        modes[p.mode] = modes.get(p.mode, 0) + 1
    return {"attached": sum(1 for p in probes if p.attached), "total": len(probes),
            "modes": dict(sorted(modes.items()))}


def top_model(cur, prev, now=None):
    """Everything one refresh of `top` shows, as a JSON-ready dict."""
    delta = cur.delta(prev)
    secs = max(cur.taken - prev.taken, 0.0)
    cpus, total = cpu_rows(delta, secs)
    return {
        "time": round(now if now is not None else time.time(), 3),
        "interval_s": round(secs, 3),
        "uptime_s": round(max(cur.taken - cur.started, 0.0), 1) if cur.started else 0.0,
        "kernel": {"release": cur.kernel.get("release", ""),
                   "generation": cur.kernel.get("generation", "")},
        "attach": attach_summary(cur.probes),
        "unavailable": reasons.group_unavailable(
            [(p.name, p.kind, p.reason) for p in cur.probes if not p.attached]),
        "cpus": cpus,
        "total": total,
        "probes": probe_rows(cur, delta, secs),
        "sources": source_rows(delta),
        "rqspinlock": rq_rows(cur, delta, secs),
        "syscall_errors": sys_rows(cur, delta, secs),
    }


# ---- text

def _num(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}" if v == int(v) and abs(v) >= 1 or v == 0 else f"{v:.2f}"
    return str(v)


def _ratio(v):
    return "-" if v is None else f"{v * 100:.2f}%"


def _hms(secs):
    secs = int(secs)
    return f"{secs // 3600:d}:{secs // 60 % 60:02d}:{secs % 60:02d}"


def header_lines(m, sort="cpu", focus="cpu", paused=False):
    a = m["attach"]
    modes = ", ".join(f"{n} {mode}" for mode, n in a["modes"].items())
    state = "  [paused]" if paused else ""
    return [f"lstrace top - kernel {m['kernel']['release']} (generation "
            f"{m['kernel']['generation']})  probes {a['attached']}/{a['total']} attached "
            f"({modes})  up {_hms(m['uptime_s'])}  interval {m['interval_s']:.1f}s{state}",
            f"sort: {sort}  focus: {focus}   keys: q quit  s sort  c cpu/probe  p pause"]


CPU_HEADERS = ["", "CPU", "calls/s", "busy/s", "deadlock/s", "timeout/s", "fail/s",
               "sys_err/s", "fail%", "worst probe"]
PROBE_HEADERS = ["", "probe", "mode", "calls/s", "fail/s", "calls", "failures", "busy",
                 "deadlock", "timeout"]


def _sort_cpu(rows, sort):
    if sort == "calls":
        return sorted(rows, key=lambda r: (-r["calls_per_s"], str(r["cpu"])))
    if sort == "failures":
        return sorted(rows, key=lambda r: (-(r["failures_per_s"] + r["syscall_errors_per_s"]),
                                           str(r["cpu"])))
    if sort == "ratio":
        return sorted(rows, key=lambda r: (-(r["failure_ratio"] or 0), str(r["cpu"])))
    return sorted(rows, key=lambda r: r["cpu"])


def _sort_probe(rows, sort):
    if sort == "calls":
        return sorted(rows, key=lambda r: (-(r["calls_per_s"] or 0), r["probe"]))
    if sort in ("failures", "ratio"):
        return sorted(rows, key=lambda r: (-r["failures_per_s"], -r["failures_total"],
                                           r["probe"]))
    return list(rows)    # catalogue order


def _table(headers, rows):
    """tabulate -> lines; a row whose mark cell is '!' is highlighted."""
    text = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    lines = text.splitlines()
    out = [(lines[0], False), (lines[1], False)] if len(lines) >= 2 else []
    for row, line in zip(rows, lines[2:]):
        out.append((line, row[0] == "!"))
    return out


def cpu_table(m, sort="cpu"):
    rows = []
    for r in _sort_cpu(m["cpus"], sort) + [m["total"]]:
        bad = r["failures_per_s"] > 0 or r["syscall_errors_per_s"] > 0
        rows.append(["!" if bad else "", r["cpu"], _num(r["calls_per_s"]), _num(r["busy_per_s"]),
                     _num(r["deadlock_per_s"]), _num(r["timeout_per_s"]),
                     _num(r["failures_per_s"]), _num(r["syscall_errors_per_s"]),
                     _ratio(r["failure_ratio"]), r["worst_probe"] or "-"])
    return _table(CPU_HEADERS, rows)


def probe_table(m, sort="cpu"):
    """Attached probes; the unavailable ones are one line per reason below."""
    rows = []
    for r in _sort_probe([r for r in m["probes"] if r["mode"] != "unavailable"], sort):
        bad = r["failures_per_s"] > 0
        rows.append(["!" if bad else "", r["probe"], r["mode"], _num(r["calls_per_s"]),
                     _num(r["failures_per_s"]), _num(r["calls_total"]), _num(r["failures_total"]),
                     _num(r["busy_total"]), _num(r["deadlock_total"]), _num(r["timeout_total"])])
    lines = _table(PROBE_HEADERS, rows)
    lines += [("  " + reasons.group_line(g, name_probes=False), False)
              for g in m.get("unavailable", [])]
    return lines


def source_table(m):
    rows = [["!", r["count"], r["source"], r["outcome"], r["comm"], r["program"] or "-",
             r["caller"] or "-", ",".join(map(str, r["cpus"]))] for r in m["sources"]]
    return _table(["", "events", "source", "outcome", "comm", "BPF program", "kernel caller",
                   "CPUs"], rows)


def rq_table(m):
    rows = [["!" if r["per_s"] else "", r["cpu"], r["errno"], r["kind"], r["caller"],
             _num(r["per_s"]), r["total"]] for r in m["rqspinlock"]]
    return _table(["", "CPU", "errno", "kind", "caller", "/s", "total"], rows)


def sys_table(m):
    rows = [["!" if r["per_s"] else "", r["cpu"], r["cmd"], r["map_type"], r["errno"],
             _num(r["per_s"]), r["total"]] for r in m["syscall_errors"]]
    return _table(["", "CPU", "bpf cmd", "map type", "errno", "/s", "total"], rows)


def top_lines(m, sort="cpu", focus="cpu", paused=False):
    """The whole screen as [(line, highlighted)]."""
    out = [(line, False) for line in header_lines(m, sort, focus, paused)]
    main = [("Per CPU", cpu_table(m, sort)), ("Per probe point", probe_table(m, sort))]
    if focus == "probe":
        main.reverse()
    sections = main + [("Top failure sources (last interval)", source_table(m) if m["sources"]
                        else [("  none", False)]),
                       ("rqspinlock failures", rq_table(m) if m["rqspinlock"]
                        else [("  none", False)]),
                       ("bpf() syscall errors", sys_table(m) if m["syscall_errors"]
                        else [("  none", False)])]
    for title, lines in sections:
        out.append(("", False))
        out.append((title, False))
        out.extend(lines)
    return out


def top_text(m, sort="cpu", focus="cpu", color=False):
    lines = top_lines(m, sort, focus)
    return "\n".join(f"{ANSI_HI}{t}{ANSI_OFF}" if hi and color else t for t, hi in lines)
