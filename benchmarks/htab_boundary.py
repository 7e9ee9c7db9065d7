"""What the hash-map boundary (`--probes +maps`: the fexit on
htab_map_update_elem, whose failure path counts the rqspinlock failure with
its kind) costs a hash-map user: an uncontended replace (the fexit's success
path) and a contended one (a nested update of the same key fails with AA on
the bucket lock: the failure path hashes the key and reads the held-locks
table), with and without the probe attached, side by side.

Runs where fentry attaches (a 7.x kernel-lab guest: `benchmarks/run` boots
one).  The workload is the htab-deadlock repro's `outer` program
(bpf/repro/htab.bpf.c: arm a bpf_timer, replace the element), test-run R
times per timing; contended attaches the nesting program, uncontended does
not.  Each round times both once detached and once attached, adjacent, the
order rotating; the ratio of the pair is the round's.  The probe's counts are
checked against the failures the workload made.  Prints one JSON object after
the BENCH_JSON marker.
"""
import argparse
import json
import sys

from common import paired_rounds, timed

MARKER = "BENCH_JSON "


def nested_failures(obj):
    """The nested updates' failures so far on CPU 0 (the workload's own count)."""
    from lstrace.repro import stats
    from lstrace.repro.cases.htab import CANCEL_FIELDS, HOOKS
    g = stats.read_groups(obj.map_fd("stats"), {"n": HOOKS[f"fentry/{CANCEL_FIELDS}"][1]}, [0])
    return g["n"][0]["deadlock"] + g["n"][0]["timeout"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5000, help="test-run repeats per timing")
    ap.add_argument("-r", type=int, default=9, help="rounds")
    a = ap.parse_args()
    from lstrace.repro.cases.base import load, set_cfg
    from lstrace.repro.cases.htab import CANCEL_FIELDS, HOOKS
    from lstrace.repro.host import has_func, kernel
    from lstrace.session import Session
    from lstrace.workload import pinned
    if not has_func(CANCEL_FIELDS):
        raise SystemExit(f"needs {CANCEL_FIELDS} (7.x) for the nesting")
    sym = kernel().kallsyms.range_of("bpf_timer_cb")
    skip = [prog for h, (prog, _g) in HOOKS.items() if h != f"fentry/{CANCEL_FIELDS}"]
    with Session(probes=["htab_update"]) as s, load("htab", skip=skip) as obj, pinned(0):
        p = next(p for p in s.plans if p.name == "htab_update")
        if not p.available:
            raise SystemExit(f"htab_update unavailable here: {p.reason}")
        set_cfg(obj, 0, 0, 0, 0, sym[0] if sym else 0, 0)
        fd = obj.prog_fd("outer")
        before, made = sum(s.snapshot().rq_failures.values()), 0

        def off(k):
            if k == "contended":
                obj.attach(HOOKS[f"fentry/{CANCEL_FIELDS}"][0])
            s.detach(p)
            return timed(fd, a.n)

        def on(k):
            nonlocal made
            s.attach(p)
            n0 = nested_failures(obj)
            ns = timed(fd, a.n)
            made += nested_failures(obj) - n0
            if k == "contended":
                obj.detach()
            return ns
        out = paired_rounds(("uncontended", "contended"), a.r, off, on)
        counted = sum(s.snapshot().rq_failures.values()) - before
        out["mode"] = p.mode
        out["failures_made_while_attached"] = made
        out["failures_counted"] = counted
    print(MARKER + json.dumps(out))
    print(f"# uncontended {out['uncontended']['ratio']:.3f}x, contended (AA) "
          f"{out['contended']['ratio']:.3f}x; counted {counted} of {made}", file=sys.stderr)
    return 0 if counted == made else 1


if __name__ == "__main__":
    sys.exit(main())
