"""Tables (tabulate, GitHub markdown) from the benchmark modules' JSON results.

Every cell is "median [q1–q3]" (interquartile range) over the repeated runs,
never one run; the JSON keeps min and max too.  Quartiles, not min–max: on
this shared machine other sessions' bursts hit single runs, and one such run
should widen the range only as much as it is representative."""
import statistics

from tabulate import tabulate

# the targets for lstrace in fentry mode
TARGET_FLOOR, TARGET_FUNCCOUNT = 1.3, 0.5


def spread(s, scale=1.0, fmt="{:.0f}"):
    f = lambda v: fmt.format(v * scale)  # noqa: E731
    return f"{f(s['median'])} [{f(s['q1'])}–{f(s['q3'])}]"


def _ratio_runs(num, den):
    return [a / b for a, b in zip(num, den) if b > 0]


def _quartiles(xs):
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def _ratio_cell(xs):
    if not xs:
        return "–"
    q1, q3 = _quartiles(xs)
    return f"{statistics.median(xs):.2f} [{q1:.2f}–{q3:.2f}]"


def helper_ratios(res):
    """Per round overhead ratios of each configuration to the floor and to funccount."""
    c = res["configs"]
    runs = {k: v["overhead_runs"] for k, v in c.items()}
    floor, fc = runs.get("empty_fentry"), runs.get("funccount")
    return {k: (_ratio_runs(v, floor) if floor else [], _ratio_runs(v, fc) if fc else [])
            for k, v in runs.items()}


ORDER = ("empty_fentry", "empty_fentry_fexit", "ktime_fentry_fexit", "lstrace_fentry",
         "empty_kprobe", "empty_kprobe_kretprobe", "lstrace_kprobe", "funccount")
LABELS = {
    "empty_fentry": "(b) empty fentry — the floor",
    "empty_fentry_fexit": "empty fentry + fexit",
    "ktime_fentry_fexit": "fentry + fexit, each one bpf_ktime_get_ns()",
    "lstrace_fentry": "(c) **lstrace, fentry mode**",
    "empty_kprobe": "empty kprobe",
    "empty_kprobe_kretprobe": "empty kprobe + kretprobe",
    "lstrace_kprobe": "(d) lstrace, kprobe mode",
    "funccount": "(e) BCC funccount-bpfcc",
}


def helper_table(res):
    c = res["configs"]
    ratios = helper_ratios(res)
    rows = [["(a) no probe", spread(res["baseline_ns"]), "0", "–", "–", "–"]]
    for k in ORDER:
        if k not in c:
            continue
        v = c[k]
        seen = v["calls_seen"]
        check = "–" if seen is None else ("= made" if seen == v["calls_made"]
                                          else f"{seen} of {v['calls_made']}")
        rows.append([LABELS[k], spread(v["ns_per_call"]), spread(v["overhead_ns"]),
                     _ratio_cell(ratios[k][0]), _ratio_cell(ratios[k][1]), check])
    for k, why in res.get("skipped", {}).items():
        rows.append([LABELS.get(k, k), "not measured: " + why.splitlines()[0][:80], "", "", "",
                     ""])
    return tabulate(rows, headers=["probe on bpf_task_storage_get", "ns / call",
                                   "overhead ns / call", "× floor", "× funccount",
                                   "calls counted"],
                    tablefmt="github", disable_numparse=True)


def helper_verdict(res):
    r = helper_ratios(res).get("lstrace_fentry")
    if not r or not r[0] or not r[1]:
        return "targets: not evaluated (lstrace fentry, the floor or funccount missing)"
    f, fc = statistics.median(r[0]), statistics.median(r[1])
    return (f"targets: lstrace fentry = {f:.2f}× the empty-fentry overhead (target ≤ "
            f"{TARGET_FLOOR}: {'met' if f <= TARGET_FLOOR else 'NOT met'}), "
            f"{fc:.2f}× funccount's (target ≤ {TARGET_FUNCCOUNT}: "
            f"{'met' if fc <= TARGET_FUNCCOUNT else 'NOT met'})")


def syscall_table(res):
    rows = []
    for cfg, who in (("empty_tracepoints", "empty programs on sys_enter/exit_bpf"),
                     ("lstrace", "**lstrace** (bpf_syscall + rqspinlock)")):
        for k, label in (("lookup", "bpf(MAP_LOOKUP_ELEM) → ENOENT"),
                         ("getppid", "getppid() (not watched)")):
            v = res["configs"][cfg][k]
            pct = [o / b * 100 - 100 for o, b in zip(v["runs"]["on"], v["runs"]["base"])]
            q1, q3 = _quartiles(pct)
            rows.append([who, label, spread(v["base_ns"]), spread(v["on_ns"]),
                         spread(v["overhead_ns"]),
                         f"{statistics.median(pct):+.1f} % [{q1:+.1f}–{q3:+.1f}]"])
    return tabulate(rows, headers=["attached", "syscall", "detached ns", "attached ns",
                                   "added ns / call", "added"],
                    tablefmt="github", disable_numparse=True)


def _kb(n):
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def exporter_table(res):
    rows = []
    for n, v in sorted(res.get("synthetic", {}).items(), key=lambda kv: int(kv[0])):
        client = v.get("client_seconds")
        rows.append([f"synthetic, {n} CPUs", f"{v['series']:,}", _kb(v["bytes"]),
                     _kb(v["gzip_bytes"]), spread(v["seconds"], 1e3, "{:.1f}"),
                     spread(client, 1e3, "{:.1f}") if client else ""])
    s = res.get("serve")
    if s:
        b = s["bytes"]["median"]
        rows.append([f"real `lstrace serve` on this host, HTTP ({s['attached'] or '?'})",
                     f"{s['series']['median']:,.0f}", _kb(b), "",
                     spread(s["scrape_s"], 1e3, "{:.1f}"), ""])
    return tabulate(rows, headers=["scrape", "series", "bytes", "gzip", "latency ms",
                                   "prometheus_client ms"],
                    tablefmt="github", disable_numparse=True)


def process_table(res):
    rows = []
    s = res.get("serve")
    if s:
        rows.append(["`lstrace serve` VmRSS once serving, MB", spread(s["rss_start_mb"], 1, "{:.1f}"),
                     f"{s['runs']} daemons"])
        if "anon_start_mb" in s:
            rows.append(["… of it anonymous (RssAnon), MB", spread(s["anon_start_mb"], 1, "{:.1f}"),
                         f"{s['runs']} daemons"])
        rows.append([f"… after {s['scrapes_per_run']} scrapes, MB",
                     spread(s["rss_after_mb"], 1, "{:.1f}"), f"{s['runs']} daemons"])
    t = res.get("top")
    if t:
        rows.append(["`lstrace top -i 1` CPU, % of one CPU", spread(t["cpu_share"], 100, "{:.2f}"),
                     f"{t['runs']} runs × {t['window_s']:g} s"])
    return tabulate(rows, headers=["process", "median [q1–q3]", "runs"],
                    tablefmt="github", disable_numparse=True)
