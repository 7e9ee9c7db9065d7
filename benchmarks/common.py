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


def paired_rounds(kinds, rounds, off, on):
    """Each round times every workload in `kinds` once without lstrace (off(k):
    ns) and right after once with it (on(k)), the order of the workloads
    rotating; per workload: the medians, and the median [min, max] of the
    rounds' on/off ratios."""
    ns = {k: {"off": [], "on": []} for k in kinds}
    ratios = {k: [] for k in kinds}
    for rnd in range(rounds):
        for k in (kinds if rnd % 2 == 0 else tuple(reversed(kinds))):
            a, b = off(k), on(k)
            ns[k]["off"].append(a)
            ns[k]["on"].append(b)
            ratios[k].append(b / a)
    return {k: {"ns_off": statistics.median(ns[k]["off"]),
                "ns_on": statistics.median(ns[k]["on"]),
                "ratio": statistics.median(ratios[k]),
                "ratio_min": min(ratios[k]), "ratio_max": max(ratios[k])} for k in kinds}


def timed(fd, repeat):
    """ns per run of `repeat` BPF_PROG_TEST_RUNs of program fd (a packet input)."""
    import time
    from lstrace.bpfcalls import prog_test_run
    from lstrace.repro.cases.helper_calls import PKT
    t0 = time.perf_counter_ns()
    ret, retval = prog_test_run(fd, data=PKT, repeat=repeat)
    if ret < 0 or retval:
        raise SystemExit(f"test run failed: {ret} {retval}")
    return (time.perf_counter_ns() - t0) / repeat
