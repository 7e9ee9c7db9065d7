"""`lstrace doctor`: what this kernel offers and how each probe would attach.

Runs the same trial attaches as a real session (so it needs root), but
loads nothing that stays.  Exit 0 when at least one probe can attach.
"""
import json
import textwrap

import click
from tabulate import tabulate

from . import headers as headersmod
from . import plan as planmod
from . import prereqs
from . import reasons
from .errors import friendly_errors
from .options import json_option, mode_option, probes_option, verbose_option
from .errors import EXIT_NO_PROBE
from .kernel import Kernel
from .preflight import check_privileges, import_bcc
from .probes import lock_users


def report(kernel, mode="auto", names=None):
    check_privileges()
    summary = kernel.summary()
    h = headersmod.find(kernel.release)
    summary["headers"] = h.note if h else "none found (BCC cannot compile)"
    summary["headers_how"] = h.how if h else "-"
    try:
        import_bcc()
        summary["bcc"] = "ok"
    except Exception as e:     # noqa: BLE001 - reported, not raised: doctor diagnoses
        summary["bcc"] = str(e)
    plans = planmod.make_plan(kernel, names, mode)
    summary["probes"] = [{"name": p.name, "kind": p.kind, "mode": p.mode,
                          "function": p.func, "reason": p.reason,
                          "blind_spots": planmod.blind_spot_details(p.blind_spot_keys),
                          "blind_spot_keys": list(p.blind_spot_keys),
                          "prototype": _proto_text(p.proto)} for p in plans]
    summary["unavailable"] = reasons.group_unavailable(
        [(p.name, p.kind, p.reason) for p in plans if not p.available])
    # what the attached probes cannot see on this kernel, and the facts that decided it
    summary["blind_spots"] = planmod.blind_spot_groups(
        [(p.name, p.blind_spot_keys) for p in plans])
    facts = next((p.facts for p in plans if p.facts), None)
    summary["blind_spot_facts"] = dict(facts.how) if facts else {}
    summary["lock_users"] = [{"lock_user": u, "view": v, "how": how} for u, v, how in
                             lock_users.views({p.name: (p.available, p.mode) for p in plans},
                                              kernel.generation)]
    summary["rqspinlock_kinds"] = lock_users.kinds_note(kernel)
    summary["missing"] = prereqs.missing(kernel)
    return summary


def lock_user_lines(views, width=100):
    """Each rqspinlock lock user's view, one wrapped line each."""
    out = ["rqspinlock failures by lock user (metric lstrace_rqspinlock_view_info):"]
    for v in views:
        out += textwrap.wrap(f"{v['lock_user']}: {v['view']}: {v['how']}", width,
                             initial_indent="  ", subsequent_indent="    ")
    return out


def blind_spot_lines(groups, facts=None, width=100):
    """The blind spots as text, each once with the probes it concerns."""
    if not groups:
        return []
    out = ["blind spots on this kernel (metric lstrace_probe_blind_spot):"]
    for g in groups:
        out += textwrap.wrap(f"{g['blind_spot']} ({reasons.short_list(g['probes'])}): "
                             f"{g['text']}", width, initial_indent="  ",
                             subsequent_indent="    ")
    if facts:
        out += textwrap.wrap("decided from: " + "; ".join(facts.values()), width,
                             initial_indent="  ", subsequent_indent="    ")
    return out


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
        rows = [(p["name"], p["mode"], p["reason"] or (
                    "blind spots: " + ", ".join(p["blind_spot_keys"])
                    if p["blind_spot_keys"] else "ok"))
                for p in r["probes"] if verbose or p["mode"] != "unavailable"]
        if rows:
            click.echo(tabulate(rows, headers=["probe", "mode", "notes"],
                                maxcolwidths=[None, None, 90]))
        if not verbose:
            lines = reasons.summary_lines(r["unavailable"])
            click.echo("\n".join(([""] if rows and lines else []) + lines))
        lines = blind_spot_lines(r["blind_spots"], r["blind_spot_facts"])
        if lines:
            click.echo("\n".join([""] + lines))
        click.echo("\n".join([""] + lock_user_lines(r["lock_users"])
                              + textwrap.wrap(r["rqspinlock_kinds"], 100, initial_indent="  ",
                                              subsequent_indent="    ")))
        if r["missing"]:
            click.echo("\n".join([""] + [f"missing {m['piece']}: {m['text']}"
                                          for m in r["missing"]]))
    raise SystemExit(0 if ok else EXIT_NO_PROBE)
