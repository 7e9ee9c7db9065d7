"""Text and JSON renderings of CaseResults."""
import json

from .host import info, kernel
from .observe import lines as lstrace_lines
from .stats import CATS

JSON_VERSION = 1


def to_json(results, duration, cpus) -> str:
    doc = {"version": JSON_VERSION, "kernel": info(), "duration": duration,
           "cpus": cpus, "affected": any(r.affected for r in results),
           "cases": {r.name: r.to_dict() for r in results}}
    return json.dumps(doc, indent=2, sort_keys=False)


def _counts(c: dict) -> str:
    shown = [f"{k}={c[k]}" for k in CATS if c.get(k)]
    return " ".join(shown) or "calls=0"


def to_text(results) -> str:
    out = [f"kernel {kernel().release}, generation {kernel().generation}"]
    for r in results:
        if not r.runnable:
            out.append(f"{r.name}: cannot run here: {r.reason}")
            continue
        flag = "AFFECTED" if r.affected else "not affected"
        out.append(f"{r.name}: {flag}: {r.verdict}")
        width = max((len(g) for g in r.groups), default=0)
        for g, per in r.groups.items():
            cells = " | ".join(f"CPU {cpu}: {_counts(c)}" for cpu, c in per.items())
            out.append(f"  {g:<{width}}  {cells}")
        if r.failures:
            out += _failure_lines(r.failures)
        elif r.visible:
            out.append("  reached lock:contention_end (ret<0): " +
                       ", ".join(f"CPU {c}: {n}" for c, n in r.visible.items()))
        out += lstrace_lines(r)
    return "\n".join(out)


def _split(m: dict) -> str:
    kinds = ", ".join(f"{k} {n}" for k, n in m["by_kind"].items() if n)
    errs = ", ".join(f"{m[k]} {e}" for k, e in (("deadlock", "-EDEADLK"),
                                                 ("timeout", "-ETIMEDOUT"), ("other", "other"))
                     if m[k])
    return f"{m['total']}" + (f" ({errs}; {kinds})" if m["total"] else "")


def _failure_lines(f: dict) -> list:
    """rqspinlock: failures the workload made vs those visible at contention_end."""
    rows = [("failures the workload made", f["made"]),
            ("failures visible at contention_end", f["visible"])]
    width = max(len(t) for t, _ in rows)
    out = [f"  {t:<{width}}  " + " | ".join(f"CPU {c}: {_split(m)}" for c, m in per.items())
           for t, per in rows]
    out.append(f"  {'not visible there':<{width}}  " +
               " | ".join(f"CPU {c}: {n}" for c, n in f["not_visible"].items()) +
               ": the tracepoint's blind spot")
    out.append(f"  blind spot: {f['blind_spot']}")
    return out


def list_cases(cases, reasons) -> str:
    lines = []
    for name, case in cases.items():
        why = reasons.get(name)
        state = "runs here" if why is None else f"cannot run here: {why}"
        lines.append(f"{name:<15} {case.summary}\n{'':<15} applies to: {case.applies}; {state}")
    return "\n".join(lines)
