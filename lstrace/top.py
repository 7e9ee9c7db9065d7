"""`lstrace top`: a live, full-screen table of local-storage and rqspinlock
failures per CPU and per probe point (bpftop's layout, refreshed from two
snapshots every interval).

Screens (tabulate tables, see lstrace.render): per CPU (calls/s, busy/s,
deadlock/s, timeout/s, failures/s, bpf() errors/s, failure ratio, worst
probe) with a total row; per probe point (mode, rates, totals); the top
failure sources of the last interval (comm, BPF program, kernel caller);
rqspinlock failures by errno/kind/caller; bpf() syscall errors.

Keys: q quit, s cycle sort (cpu, calls, failures, ratio), c switch the
focus between per-CPU and per-probe, p pause.  Rows with failures are red
(bold without colours; a '!' marks them in plain text).  Ctrl-C and SIGTERM
quit too (programs detached, exit 0).

--once prints one table set, sampled over one interval, and exits.  --json
prints one JSON object per interval (keys: see lstrace.render, and
    blind_spots     [{"blind_spot", "text", "probes"}] what the attached probes
                    cannot see on this kernel (the footer line of the tables)).  Without a
terminal, top prints a --once-style table set per interval.
"""
import json
import os
import sys
import time

import click

from . import render
from .errors import UsageError, friendly_errors
from .plan import blind_spot_groups
from .options import (duration_option, interval_option, json_option, latency_option,
                      mode_option, probes_option)
from .plan import parse_probe_list
from .session import Session


def _sleep_until(deadline):
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


def model(cur, prev):
    """render.top_model plus what the attached probes cannot see on this kernel
    ("blind_spots": [{"blind_spot", "text", "probes"}], the footer line)."""
    m = render.top_model(cur, prev)
    m["blind_spots"] = blind_spot_groups([(p.name, p.blind_spot_keys) for p in cur.probes])
    return m


def footer(m):
    """One line naming every blind spot and its probes (doctor explains them)."""
    if not m.get("blind_spots"):
        return ""
    by = {}
    for g in m["blind_spots"]:
        by.setdefault(", ".join(g["probes"]), []).append(g["blind_spot"])
    return "blind spots (not counted here; lstrace doctor explains): " + "; ".join(
        f"{probes}: {', '.join(keys)}" for probes, keys in by.items())


def _stream(session, interval, duration, once, emit):
    """Non-interactive loop: emit(model) once per interval."""
    start = time.monotonic()
    prev = session.snapshot()
    while True:
        _sleep_until(prev.taken + interval)
        cur = session.snapshot()
        emit(model(cur, prev))
        prev = cur
        if once or (duration and time.monotonic() - start >= duration - 1e-3):
            return


def _curses_loop(stdscr, session, interval, duration):
    import curses
    curses.curs_set(0) if hasattr(curses, "curs_set") else None
    stdscr.nodelay(False)
    hi = _highlight(curses)
    view = {"sort": 0, "focus": 0, "paused": False}
    start = time.monotonic()
    prev = session.snapshot()
    m = model(prev, prev)
    next_at = prev.taken + interval
    _draw(stdscr, m, view, hi)
    while True:
        now = time.monotonic()
        if duration and now - start >= duration:
            return
        if now >= next_at:
            cur = session.snapshot()
            if not view["paused"]:
                m = model(cur, prev)
            prev, next_at = cur, cur.taken + interval
            _draw(stdscr, m, view, hi)
            continue
        stdscr.timeout(max(10, int(min(next_at - now, 0.25) * 1000)))
        ch = stdscr.getch()
        if ch in (ord("q"), ord("Q")):
            return
        if _key(ch, view) or ch == curses.KEY_RESIZE:
            _draw(stdscr, m, view, hi)


def _highlight(curses):
    """The attribute of lines with failures: bold red where colours work."""
    if curses.has_colors():
        try:
            curses.start_color()
            curses.use_default_colors()
            curses.init_pair(1, curses.COLOR_RED, -1)
            return curses.color_pair(1) | curses.A_BOLD
        except curses.error:
            pass
    return curses.A_BOLD


def _key(ch, view):
    """s: next sort, c: next focus, p: pause; True when the view changed."""
    if ch == ord("s"):
        view["sort"] = (view["sort"] + 1) % len(render.SORTS)
    elif ch == ord("c"):
        view["focus"] = (view["focus"] + 1) % len(render.FOCUS)
    elif ch == ord("p"):
        view["paused"] = not view["paused"]
    else:
        return False
    return True


def _draw(stdscr, m, view, hi):
    import curses
    stdscr.erase()
    h, w = stdscr.getmaxyx()
    lines = render.top_lines(m, render.SORTS[view["sort"]], render.FOCUS[view["focus"]],
                             view["paused"])
    if footer(m):
        lines = lines + [("", False), (footer(m), False)]
    for y, (text, bad) in enumerate(lines[:h]):
        try:
            stdscr.addnstr(y, 0, text, w - 1, hi if bad else curses.A_NORMAL)
        except curses.error:
            pass
    stdscr.refresh()


@click.command()
@interval_option(1.0, help="Seconds between refreshes.")
@duration_option(help="Stop after SECONDS (default: until q or Ctrl-C).")
@click.option("--once", is_flag=True, help="Print one table set (one interval) and exit.")
@json_option
@probes_option
@mode_option
@latency_option
@friendly_errors
def top(interval, duration, once, as_json, probe_list, mode, latency):
    """Live per-CPU failure rates of BPF local storage and rqspinlocks."""
    if not 0 < interval < float("inf"):       # also refuses nan
        raise UsageError("--interval must be a finite number of seconds > 0")
    if not 0 <= duration < float("inf"):
        raise UsageError("--duration must be a finite number of seconds >= 0")
    names = parse_probe_list(probe_list)
    tty = sys.stdout.isatty() and sys.stdin.isatty()
    with Session(probes=names, mode=mode, latency=latency) as s:
        try:
            _run(s, interval, duration, once, as_json, tty)
        except KeyboardInterrupt:       # Ctrl-C or SIGTERM: a normal way to quit top
            pass


def _run(s, interval, duration, once, as_json, tty):
    """Output loop of top, by kind of output (json, text, curses)."""
    if as_json:
        _stream(s, interval, duration, once, lambda m: click.echo(json.dumps(m)))
    elif once or not tty:
        color = sys.stdout.isatty()
        first = [True]

        def emit(m):
            if not first[0]:
                click.echo()
            first[0] = False
            click.echo(render.top_text(m, color=color))
            if footer(m):
                click.echo(footer(m))
            sys.stdout.flush()
        _stream(s, interval, duration, once, emit)
    else:
        import curses
        # ncurses prefers LINES/COLUMNS to the terminal's real size; stale
        # exported values (pytest, some shells) would cut the screen short
        os.environ.pop("LINES", None)
        os.environ.pop("COLUMNS", None)

        curses.wrapper(_curses_loop, s, interval, duration)
