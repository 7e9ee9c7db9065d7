"""What the benchmark modules share: statistics over repeated runs and an
lstrace Session whose probes can be detached and re-attached cheaply."""
import os
import statistics
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def summarize(xs):
    """median, min, max and quartiles of repeated measurements."""
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1],
            "q1": q[0], "q3": q[2], "n": len(xs)}


def clocksource():
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            return f.read().strip()
    except OSError:
        return "?"


class SessionToggle:
    """A started lstrace Session whose BPF programs stay loaded while their
    attachments come and go: compiling once and toggling links lets each round
    compare adjacent runs with and without lstrace (a fresh Session per round
    would cost a BCC compile, ~10 s in a TCG guest)."""

    def __init__(self, probes, mode="auto", latency=False):
        from lstrace.session import Session
        self.s = Session(probes=probes, mode=mode, latency=latency).start()
        self.plans = [p for p in self.s.plans if p.available]
        self.modes = {p.name: p.mode for p in self.plans}
        self.funcs = {p.name: p.func for p in self.plans}
        self.attached = True

    def on(self):
        if self.attached:
            return
        for p in self.plans:
            mode = p.mode
            self.s.attach(p)
            if p.mode != mode:
                raise RuntimeError(f"re-attaching {p.name} failed: {p.reason}")
        self.attached = True

    def off(self):
        if not self.attached:
            return
        for p in self.plans:
            self.s.detach(p)
        self.attached = False

    def snapshot(self):
        return self.s.snapshot()

    def stop(self):
        self.s.stop()
