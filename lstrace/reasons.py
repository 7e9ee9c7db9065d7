"""Say each reason once: probes that are unavailable for the same reason are
one line ("19 helper probes unavailable: ..."), not one line each.  serve,
doctor and top print these; --verbose and --json keep the per-probe detail."""


def group_unavailable(items):
    """[(name, kind, reason)] of unavailable probes -> [{"kind", "reason", "probes"}],
    largest group first, then by the first probe's catalogue order."""
    groups = {}
    for name, kind, reason in items:
        groups.setdefault((kind, reason), []).append(name)
    return [{"kind": kind, "reason": reason, "probes": names}
            for (kind, reason), names in sorted(groups.items(), key=lambda kv: -len(kv[1]))]


def group_line(g, name_probes=True):
    """One group as a line: "probe x unavailable: ..." or "19 helper probes
    (a, b, c and 16 more; ...) unavailable: ..." (names left out with name_probes=False)."""
    names = g["probes"]
    if len(names) == 1:
        what = f"probe {names[0]}"
    else:
        what = f"{len(names)} {g['kind']} probes" + (f" ({_short_list(names)})"
                                                     if name_probes else "")
    return f"{what} unavailable: {g['reason']}"


def summary_lines(groups):
    """One line per reason, from group_unavailable()'s groups."""
    return [group_line(g) for g in groups]


def short_list(names, most=3):
    """"a, b, c and 16 more" (without the --verbose hint)."""
    if len(names) <= most:
        return ", ".join(names)
    return ", ".join(names[:most]) + f" and {len(names) - most} more"


def _short_list(names, most=3):
    if len(names) <= most:
        return ", ".join(names)
    return ", ".join(names[:most]) + f" and {len(names) - most} more; --verbose names them"
