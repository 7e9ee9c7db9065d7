"""lstrace's own counts beside a repro case's: while the cases run, an lstrace
Session (the default probes and the hash-map boundary, --probes +maps) counts,
and each case's rqspinlock failures (Case.made_rq: per CPU, errno, kind and
lock user) are set beside what lstrace_rqspinlock_failures_total counted in
the same window.  Other processes' failures in that window count too: on a
busy host "counted" can exceed "made"; never the reverse, unless lstrace
cannot see that lock user here (`lstrace doctor` says which view it has)."""
from .. import probes
from ..probes import lock_users


class Observer:
    """A context manager: an lstrace Session, or the reason there is none."""

    def __init__(self):
        self.session, self.reason = None, ""

    def __enter__(self):
        from ..session import Session
        try:
            self.session = Session(probes=list(probes.DEFAULT_NAMES) +
                                   list(probes.helpers.MAP_PROBES)).__enter__()
        except Exception as e:      # noqa: BLE001 - the cases still run; the output says why
            self.reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return self

    def __exit__(self, *exc):
        if self.session is not None:
            self.session.__exit__(*exc)
        return False

    def run(self, case, run):
        """run(): a CaseResult; its extra["lstrace"]: made vs counted rows."""
        before = self.session.snapshot() if self.session else None
        r = run()
        if not r.runnable:
            return r
        made = case.made_rq(r)
        if before is None:
            r.extra["lstrace"] = {"reason": f"lstrace did not run: {self.reason}", "rows": []}
            return r
        after = self.session.snapshot()
        counted = after.delta(before).rq_failures
        users = {k[3] for k in made}
        attached = {p.name: (p.attached, p.mode) for p in after.probes}
        views = {u: (v, how) for u, v, how in
                 lock_users.views(attached, after.kernel.get("generation", "")) if u in users}
        keys = sorted(set(made) | {k for k, n in counted.items() if n and k[3] in users})
        r.extra["lstrace"] = {
            "reason": "", "views": {u: v for u, (v, _how) in views.items()},
            "why": {u: how for u, (_v, how) in views.items()}, "rows": [
                {"cpu": c, "errno": e, "kind": k, "lock_user": u,
                 "made": made.get((c, e, k, u), 0), "counted": counted.get((c, e, k, u), 0)}
                for c, e, k, u in keys]}
        return r


class Unobserved:
    """Observer's stand-in for --no-lstrace: only runs the cases."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, case, run):
        return run()


def lines(r):
    """Text lines of one result's made-vs-counted rows (report.to_text)."""
    seen = r.extra.get("lstrace")
    if not seen:
        return []
    if seen["reason"]:
        return [f"  lstrace: {seen['reason']}"]
    if not seen["rows"]:
        return []
    out = ["  made vs counted by lstrace (lstrace_rqspinlock_failures_total):"]
    for row in seen["rows"]:
        mark = "" if row["made"] == row["counted"] else "  <- differs"
        out.append(f"    CPU {row['cpu']} {row['errno']:<9} {row['kind']:<7} "
                   f"{row['lock_user']:<13} made {row['made']:>8} counted {row['counted']:>8}"
                   f"{mark}")
    for user, view in seen.get("views", {}).items():
        out.append(f"    lstrace's view of {user} here: {view}: {seen['why'][user]}")
    return out
