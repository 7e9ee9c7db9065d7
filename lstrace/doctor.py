"""`lstrace doctor`: what this kernel offers and how each probe would attach.

Runs the same trial attaches as a real session (so it needs root), but
loads nothing that stays.  Exit 0 when at least one probe can attach.
"""
import json

import click
from tabulate import tabulate

from . import headers as headersmod
from . import plan as planmod
from . import reasons
from .errors import friendly_errors
from .options import json_option, mode_option, probes_option, verbose_option
from .errors import EXIT_NO_PROBE
from .kernel import Kernel
from .preflight import check_privileges, import_bcc


def report(kernel, mode="auto", names=None):
    check_privileges()
    summary = kernel.summary()
    h = headersmod.find(kernel.release)
    summary["headers"] = h.note if h else "none found (BCC cannot compile)"
    if h:
        summary["headers_how"] = h.how
    try:
        import_bcc()
        summary["bcc"] = "ok"
    except Exception as e:     # noqa: BLE001 - reported, not raised: doctor diagnoses
        summary["bcc"] = str(e)
    plans = planmod.make_plan(kernel, names, mode)
    summary["probes"] = [{"name": p.name, "kind": p.kind, "mode": p.mode,
                          "function": p.func, "reason": p.reason,
                          "blind_spots": p.blind_spots,
                          "prototype": _proto_text(p.proto)} for p in plans]
    summary["unavailable"] = reasons.group_unavailable(
        [(p.name, p.kind, p.reason) for p in plans if not p.available])
    return summary


def _proto_text(proto):
    if proto is None:
        return ""
    return f"{proto.ret} {proto.name}(" + ", ".join(f"{a.type} {a.name}" for a in proto.params) + ")"


@click.command()
@json_option
@mode_option
@click.option("--btf", default="/sys/kernel/btf/vmlinux", show_default=True,
              help="BTF file of the kernel to inspect.")
@probes_option
@verbose_option
@friendly_errors
def doctor(as_json, mode, btf, probe_list, verbose):
    """Kernel, generation, BTF, headers and every probe's mode with the reason."""
    names = planmod.parse_probe_list(probe_list)
    kernel = Kernel(btf_path=btf)
    r = report(kernel, mode, names)
    ok = any(p["mode"] != "unavailable" for p in r["probes"])
    if as_json:
        click.echo(json.dumps(r, indent=2))
    else:
        click.echo(tabulate([(k, r[k]) for k in ("release", "generation", "generation_text",
                                                 "btf", "headers", "headers_how", "bcc",
                                                 "cpus_online",
                                                 "preemption", "kallsyms_all")],
                            tablefmt="plain"))
        click.echo()
        rows = [(p["name"], p["mode"], p["reason"] or p["blind_spots"] or "ok")
                for p in r["probes"] if verbose or p["mode"] != "unavailable"]
        if rows:
            click.echo(tabulate(rows, headers=["probe", "mode", "notes"],
                                maxcolwidths=[None, None, 90]))
        if not verbose:
            lines = reasons.summary_lines(r["unavailable"])
            click.echo("\n".join(([""] if rows and lines else []) + lines))
    raise SystemExit(0 if ok else EXIT_NO_PROBE)
