"""Tables (tabulate, GitHub markdown) from the benchmark modules' JSON results.

Every cell is "median [q1–q3]" (interquartile range) over the repeated runs,
never one run; the JSON keeps min and max too.  Quartiles, not min–max: on
this shared machine other sessions' bursts hit single runs, and one such run
should widen the range only as much as it is representative."""
import statistics

from tabulate import tabulate

# issue 11's targets: counting mode <= 1.2x an empty fexit's overhead and below
# funccount's; --latency <= 1.5x an empty fentry + fexit pair
TARGET_FLOOR, TARGET_FUNCCOUNT, TARGET_LATENCY = 1.2, 1.0, 1.5


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
    """Per round overhead ratios of each configuration to the floor (an empty
    fexit: the least any tool that sees return values runs) and to funccount."""
    c = res["configs"]
    runs = {k: v["overhead_runs"] for k, v in c.items()}
    floor, fc = runs.get("empty_fexit"), runs.get("funccount")
    return {k: (_ratio_runs(v, floor) if floor else [], _ratio_runs(v, fc) if fc else [])
            for k, v in runs.items()}


def ratios_json(res):
    """`helper.ratios`: medians of per-round overhead ratios (counting mode
    unless named); None where a configuration was not measured."""
    runs = {k: v["overhead_runs"] for k, v in res["configs"].items()}

    def med(num, den):
        xs = _ratio_runs(runs[num], runs[den]) if num in runs and den in runs else []
        return round(statistics.median(xs), 3) if xs else None
    return {"lstrace_vs_empty_fexit": med("lstrace_fentry", "empty_fexit"),
            "lstrace_vs_funccount": med("lstrace_fentry", "funccount"),
            "latency_vs_empty_pair": med("lstrace_fentry_latency", "empty_fentry_fexit"),
            "kprobe_vs_empty_kretprobe": med("lstrace_kprobe", "empty_kretprobe"),
            "kprobe_latency_vs_empty_pair": med("lstrace_kprobe_latency",
                                                "empty_kprobe_kretprobe")}


ORDER = ("empty_fentry", "empty_fexit", "empty_fentry_fexit", "ktime_fentry_fexit",
         "lstrace_fentry", "lstrace_fentry_latency", "empty_kprobe", "empty_kretprobe",
         "empty_kprobe_kretprobe", "lstrace_kprobe", "lstrace_kprobe_latency", "funccount")
LABELS = {
    "empty_fentry": "empty fentry",
    "empty_fexit": "(b) empty fexit — the floor",
    "empty_fentry_fexit": "empty fentry + fexit",
    "ktime_fentry_fexit": "fentry + fexit, each one bpf_ktime_get_ns()",
    "lstrace_fentry": "(c) **lstrace, fentry mode (counting)**",
    "lstrace_fentry_latency": "lstrace, fentry mode, `--latency`",
    "empty_kprobe": "empty kprobe",
    "empty_kretprobe": "empty kretprobe",
    "empty_kprobe_kretprobe": "empty kprobe + kretprobe",
    "lstrace_kprobe": "(d) lstrace, kprobe mode (counting)",
    "lstrace_kprobe_latency": "lstrace, kprobe mode, `--latency`",
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
                                   "overhead ns / call", "× empty fexit", "× funccount",
                                   "calls counted"],
                    tablefmt="github", disable_numparse=True)


def helper_verdict(res):
    r = res.get("ratios") or ratios_json(res)
    f, fc, lat = (r.get(k) for k in ("lstrace_vs_empty_fexit", "lstrace_vs_funccount",
                                    "latency_vs_empty_pair"))
    if f is None or fc is None:
        return "targets: not evaluated (lstrace fentry, the empty fexit or funccount missing)"

    def met(v, t, strict=False):
        return "met" if (v < t if strict else v <= t) else "NOT met"
    out = (f"targets: lstrace fentry (counting) = {f:.2f}× an empty fexit's overhead (target ≤ "
           f"{TARGET_FLOOR}: {met(f, TARGET_FLOOR)}), {fc:.2f}× funccount's (target < "
           f"{TARGET_FUNCCOUNT}: {met(fc, TARGET_FUNCCOUNT, True)})")
    if lat is not None:
        out += (f"; `--latency` = {lat:.2f}× an empty fentry + fexit pair (target ≤ "
                f"{TARGET_LATENCY}: {met(lat, TARGET_LATENCY)})")
    return out


def syscall_table(res):
    rows = []
    for cfg, who in (("empty_raw_sys_exit", "empty raw_tp program on sys_exit (the floor)"),
                     ("empty_tracepoints", "empty programs on sys_enter/exit_bpf"),
                     ("lstrace", "**lstrace** (bpf_syscall on tp_btf + rqspinlock)"),
                     ("lstrace_raw_tp", "lstrace `--mode kprobe` (bpf_syscall on raw_tp)")):
        if cfg not in res["configs"]:
            continue
        for k, label in (("lookup", "bpf(MAP_LOOKUP_ELEM) → ENOENT (counted)"),
                         ("lookup_ok", "bpf(MAP_LOOKUP_ELEM) → found"),
                         ("getppid", "getppid() (not watched)")):
            v = res["configs"][cfg].get(k)
            if v is None:
                continue
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


def image_table(res):
    """Size (and its parts), build time, start-up container vs host."""
    du, mb = res["du"], lambda n: f"{n / 1e6:.0f} MB"
    rest = du["total"] - du["llvm"] - du["headers"] - du["python"]
    rows = [("image size (podman)", mb(res["size_bytes"])),
            ("  BCC's LLVM (libLLVM, libclang-cpp, libz3)", mb(du["llvm"])),
            ("  kernel headers (/usr/src)", mb(du["headers"])),
            ("  Python", mb(du["python"])),
            ("  the rest (Debian base, BCC, bpftool, lstrace)", mb(rest)),
            ("build, empty storage (base root cached)" if not res["base_root_seconds"]
             else f"build (+ {res['base_root_seconds']:.0f} s for the base root)",
             f"{res['build_seconds']:.0f} s"),
            ("serve start-up to first scrape, container", spread(res["startup_container"], 1,
                                                                 "{:.2f}") + " s"),
            ("serve start-up to first scrape, host", spread(res["startup_host"], 1, "{:.2f}")
             + " s")]
    return tabulate(rows, headers=["image " + res["image"], ""], tablefmt="github")
