"""`lstrace hist`: log2 latency histograms (BCC funclatency / runqlen -C look).

    lstrace hist PROBE [--per-cpu | --cpu N] [-d SECONDS] [-i SECONDS]
                       [--unit ns|us|ms] [--json]
    lstrace hist --list

PROBE is a helper probe (entry -> exit latency of the kernel function, fentry
or kprobe mode) or `rqspinlock` (wait of a contended rqspinlock,
lock:contention_begin -> contention_end, queued path, tracepoint mode).
Slot s covers (2^(s-1), 2^s] ns, slot 0 covers 0..1 ns (lstrace.render_hist).

Without -i one histogram is printed when -d ends (or at Ctrl-C or SIGTERM,
exit 0); with -i one per interval, each of that interval only.  --per-cpu prints one histogram per
CPU ("cpu = N" sections like runqlen -C), --cpu N only that CPU; the default
sums the CPUs.  Each histogram ends with count and p50/p99 estimates
(linear inside the slot).

--json prints one object per histogram period:
    {"probe", "mode", "what", "unit", "interval_s",
     "histograms": [{"cpu": N or "all", "count", "p50", "p99",
                     "buckets": [{"slot", "gt_ns", "le_ns", "count"}]}]}
(p50/p99 in `unit`, null when empty; only non-empty buckets).

Exit codes: 2 unknown probe or one without a histogram, 3 probe unavailable
on this kernel (the reason is printed), 77 not root.
"""
import json
import time

import click
from tabulate import tabulate

from . import plan as planmod
from . import probes as probesmod
from . import render_hist as rh
from .errors import NoProbeAttached, UsageError, friendly_errors
from .kernel import Kernel
from .options import duration_option, interval_option, json_option, mode_option
from .preflight import check_privileges
from .session import Session

def what_of(name):
    return probesmod.module_of(name).hist_what(name)


def check_name(name):
    if name not in probesmod.ALL_NAMES:
        raise UsageError(f"unknown probe {name!r}; `lstrace hist --list` names the probes "
                         "with a histogram")
    why = probesmod.module_of(name).NO_HIST
    if why:
        raise UsageError(why)


def histograms(snap, name, per_cpu=False, cpu=None):
    """[(cpu or "all", slots)] from a (delta) snapshot."""
    by_cpu = {c: slots or [0] * 40
              for c, slots in probesmod.module_of(name).hist_slots(snap, name).items()}
    if cpu is not None:
        return [(cpu, by_cpu.get(cpu, [0] * 40))]
    if per_cpu:
        return sorted(by_cpu.items())
    total = []
    for c in sorted(by_cpu):
        total = rh.add_slots(total, by_cpu[c])
    return [("all", total or [0] * 40)]


def text_of(hists, unit):
    out = []
    for cpu, slots in hists:
        if cpu != "all":
            out.append(f"\ncpu = {cpu}")
        lines = rh.hist_lines(slots, unit)
        out.extend(lines if lines else [f"     {rh.UNITS[unit][1]:<19} : (no events)"])
        out.append(rh.summary_line(slots, unit))
    return "\n".join(out)


def json_of(name, mode, hists, unit, secs):
    return {"probe": name, "mode": mode, "what": what_of(name), "unit": unit,
            "interval_s": round(secs, 3),
            "histograms": [dict({"cpu": cpu}, **rh.hist_json(slots, unit))
                           for cpu, slots in hists]}


def list_rows(kernel):
    check_privileges()
    names = [n for n in probesmod.ALL_NAMES if not probesmod.module_of(n).NO_HIST]
    rows = []
    for p in planmod.make_plan(kernel, names):
        rows.append({"probe": p.name, "mode": p.mode, "what": what_of(p.name),
                     "reason": p.reason if not p.available else ""})
    return rows


@click.command()
@click.argument("probe", required=False)
@click.option("--per-cpu", is_flag=True, help="One histogram per CPU (like runqlen -C).")
@click.option("--cpu", type=int, default=None, help="Only this CPU.")
@duration_option()
@interval_option(0, help="Print a histogram every SECONDS (of that interval only).")
@click.option("--unit", type=click.Choice(["ns", "us", "ms"]), default="ns", show_default=True)
@json_option
@mode_option
@click.option("--list", "list_", is_flag=True, help="Name what can be histogrammed here.")
@friendly_errors
def hist(probe, per_cpu, cpu, duration, interval, unit, as_json, mode, list_):
    """Log2 histograms of helper latency or rqspinlock wait, per CPU."""
    if list_:
        _print_list(as_json)
        return
    kernel = _check_args(probe, per_cpu, cpu, duration, interval)
    with Session(kernel=kernel, probes=[probe], mode=mode, latency=True) as s:   # hist is latency
        st = next(p for p in s.statuses() if p.name == probe)
        if not st.attached:
            raise NoProbeAttached(f"{probe} is unavailable on this kernel: {st.reason}")
        _sample(s, _emitter(probe, st.mode, per_cpu, cpu, unit, as_json), duration, interval)


def _print_list(as_json):
    rows = list_rows(Kernel())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(tabulate([(r["probe"], r["mode"], r["what"], r["reason"] or "ok")
                             for r in rows], headers=["probe", "mode", "histogram", "notes"],
                            maxcolwidths=[None, None, 50, 60]))


def _check_args(probe, per_cpu, cpu, duration, interval):
    """Every argument check before anything is loaded (UsageError); the Kernel."""
    if not probe:
        raise UsageError("name a PROBE (or --list)")
    check_name(probe)
    if per_cpu and cpu is not None:
        raise UsageError("--per-cpu and --cpu are exclusive")
    if not (0 <= duration < float("inf") and 0 <= interval < float("inf")):   # and not nan
        raise UsageError("--duration and --interval must be finite numbers of seconds >= 0")
    kernel = Kernel()
    if cpu is not None and cpu not in kernel.possible_cpus:
        raise UsageError(f"no CPU {cpu} (possible: {kernel.possible_cpus[0]}-"
                         f"{kernel.possible_cpus[-1]})")
    return kernel


def _emitter(probe, mode, per_cpu, cpu, unit, as_json):
    """emit(cur, prev): print the histograms of cur - prev (text or JSON lines)."""
    first = True

    def emit(cur, prev):
        nonlocal first
        hists = histograms(cur.delta(prev), probe, per_cpu, cpu)
        if as_json:
            click.echo(json.dumps(json_of(probe, mode, hists, unit, cur.taken - prev.taken)))
        else:
            if not first:
                click.echo()
            click.echo(time.strftime("%H:%M:%S") + f"  {probe}: {what_of(probe)}")
            click.echo(text_of(hists, unit))
        first = False
    return emit


def _sample(s, emit, duration, interval):
    """Snapshot every --interval (each interval emitted) until --duration or
    Ctrl-C; without --interval, one emit of the whole run at its end."""
    start = time.monotonic()
    prev = s.snapshot()
    try:
        while True:
            step = interval or duration or 3600
            end = (start + duration) if duration else float("inf")
            deadline = min(prev.taken + step, end)
            while time.monotonic() < deadline:
                time.sleep(min(deadline - time.monotonic(), 0.2) if
                           deadline > time.monotonic() else 0)
            cur = s.snapshot()
            if interval:
                emit(cur, prev)
                prev = cur
            if time.monotonic() >= end:
                break
    except KeyboardInterrupt:
        cur = s.snapshot()
        if interval:
            emit(cur, prev)
            return
    if not interval:
        emit(cur, prev)
