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
                    "syscall_errors_per_s", "aa_per_s", "abba_per_s", "nmi_per_s"
                    (rqspinlock failures by kind: AA and ABBA among deadlock_per_s,
                    nmi: in NMI context), "failure_ratio" (null when no calls),
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

# the per-CPU row's counts: (key, column header, counts as a failure), each
# probe module's CPU_KEYS (its cpu_counts adds them), in the modules' order
CPU_COLUMNS = probes.CPU_KEYS
RATE_KEYS = tuple(k for k, _, _ in CPU_COLUMNS)
FAILURE_KEYS = tuple(k for k, _, failure in CPU_COLUMNS if failure)
SORTS = ("cpu", "calls", "failures", "ratio")
FOCUS = ("cpu", "probe")
ANSI_HI, ANSI_OFF = "\x1b[1;31m", "\x1b[0m"


def _rate(n, secs):
    return round(n / secs, 2) if secs > 0 else 0.0


def _per_cpu_failures(snap):
    """cpu -> {probe: failures}, of every probe module's failures."""
    out = {cpu: {} for cpu in snap.cpus}
    for m in probes.MODULES:
        for cpu, probe, n in m.cpu_failures(snap):
            if n and cpu in out:
                out[cpu][probe] = out[cpu].get(probe, 0) + n
    return out


def _worst(fails):
    if not fails:
        return None
    return sorted(fails.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def cpu_rows(delta, secs):
    totals = delta.cpu_counts()
    fails = _per_cpu_failures(delta)
    rows = []
    sums = {k: 0 for k in RATE_KEYS}
    all_fails = {}
    for cpu in delta.cpus:
        t = totals[cpu]
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
    def rate(n):
        return _rate(n, secs)
    rows = []
    for st in cur.probes:
        r = {"probe": st.name, "mode": st.mode, "kind": st.kind,
             "calls_per_s": 0.0, "failures_per_s": 0.0, "calls_total": 0, "failures_total": 0,
             "busy_total": 0, "deadlock_total": 0, "timeout_total": 0,
             "reason": st.reason if not st.attached else ""}
        m = probes.module_of(st.name, st.kind)
        if m:
            m.top_row(st, cur, delta, rate, r)
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


def section_rows(cur, delta, secs):
    """{top --json key: rows} of the probes with a section of their own."""
    return {m.TOP_SECTION[0]: m.top_rows(cur, delta, lambda n: _rate(n, secs))
            for m in probes.MODULES if m.TOP_SECTION}


def attach_summary(statuses):
    modes = {}
    for p in statuses:
        modes[p.mode] = modes.get(p.mode, 0) + 1
    return {"attached": sum(1 for p in statuses if p.attached), "total": len(statuses),
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
        **section_rows(cur, delta, secs),
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


CPU_HEADERS = ["", "CPU"] + [h for _, h, _ in CPU_COLUMNS] + ["fail%", "worst probe"]
PROBE_HEADERS = ["", "probe", "mode", "calls/s", "fail/s", "calls", "failures", "busy",
                 "deadlock", "timeout"]


def _failures_per_s(row):
    return sum(row[f"{k}_per_s"] for k in FAILURE_KEYS)


def _sort_cpu(rows, sort):
    if sort == "calls":
        return sorted(rows, key=lambda r: (-r["calls_per_s"], str(r["cpu"])))
    if sort == "failures":
        return sorted(rows, key=lambda r: (-_failures_per_s(r), str(r["cpu"])))
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
        rows.append(["!" if _failures_per_s(r) > 0 else "", r["cpu"]]
                    + [_num(r[f"{k}_per_s"]) for k in RATE_KEYS]
                    + [_ratio(r["failure_ratio"]), r["worst_probe"] or "-"])
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


def section_table(m, module):
    """One probe's section (its TOP_SECTION) as table lines."""
    key, _title, headers = module.TOP_SECTION
    rows = [["!" if r["per_s"] else ""] + module.top_cells(r, _num) for r in m[key]]
    return _table([""] + headers, rows)


def top_lines(m, sort="cpu", focus="cpu", paused=False):
    """The whole screen as [(line, highlighted)]."""
    out = [(line, False) for line in header_lines(m, sort, focus, paused)]
    main = [("Per CPU", cpu_table(m, sort)), ("Per probe point", probe_table(m, sort))]
    if focus == "probe":
        main.reverse()
    sections = main + [("Top failure sources (last interval)", source_table(m) if m["sources"]
                        else [("  none", False)])]
    sections += [(mod.TOP_SECTION[1], section_table(m, mod) if m[mod.TOP_SECTION[0]]
                  else [("  none", False)]) for mod in probes.MODULES if mod.TOP_SECTION]
    for title, lines in sections:
        out.append(("", False))
        out.append((title, False))
        out.extend(lines)
    return out


def top_text(m, sort="cpu", focus="cpu", color=False):
    lines = top_lines(m, sort, focus)
    return "\n".join(f"{ANSI_HI}{t}{ANSI_OFF}" if hi and color else t for t, hi in lines)
