"""What the rqspinlock_kfunc probe costs a bpf_res_spin_lock caller: an
uncontended lock/unlock (the probe never runs: only failures report) and a
failing AA retake (each failure writes its stream report, which the probe
reads line by line), with and without the probe attached, side by side.

Runs where fentry attaches (a 7.x kernel-lab guest: `benchmarks/run` boots
one).  Each round times R BPF_PROG_TEST_RUN repeats of the repro's
`uncontended` and `aa` programs (bpf/repro/rqspin.bpf.c) once detached and
once attached, adjacent, the order rotating; the ratio of the pair is the
round's.  The probe's own count is checked against the failures made.
Prints one JSON object after the BENCH_JSON marker.
"""
import argparse
import json
import sys

from common import paired_rounds, timed

MARKER = "BENCH_JSON "


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000, help="test-run repeats per timing")
    ap.add_argument("-r", type=int, default=9, help="rounds")
    a = ap.parse_args()
    from lstrace.repro.cases.base import load
    from lstrace.session import Session
    from lstrace.workload import pinned
    with Session(probes=["rqspinlock_kfunc"]) as s, load("rqspin") as obj, pinned(0):
        p = next(p for p in s.plans if p.name == "rqspinlock_kfunc")
        if not p.available:
            raise SystemExit(f"rqspinlock_kfunc unavailable here: {p.reason}")
        fds = {"uncontended": obj.prog_fd("uncontended"), "contended_aa": obj.prog_fd("aa")}
        before = sum(s.snapshot().rq_failures.values())

        def off(k):
            s.detach(p)
            return timed(fds[k], a.n)

        def on(k):
            s.attach(p)
            return timed(fds[k], a.n)
        out = paired_rounds(tuple(fds), a.r, off, on)
        made = a.r * a.n          # every attached contended_aa call fails
        counted = sum(s.snapshot().rq_failures.values()) - before
        out["mode"] = p.mode
        out["failures_made_while_attached"] = made
        out["failures_counted"] = counted
    print(MARKER + json.dumps(out))
    ok = counted == made
    print(f"# uncontended {out['uncontended']['ratio']:.3f}x, contended (AA) "
          f"{out['contended_aa']['ratio']:.3f}x; counted {counted} of {made}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
