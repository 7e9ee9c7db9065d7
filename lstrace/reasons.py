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


def summary_lines(items):
    """One line per reason."""
    out = []
    for g in group_unavailable(items):
        n, names = len(g["probes"]), g["probes"]
        what = f"probe {names[0]}" if n == 1 else \
            f"{n} {g['kind']} probes ({_short_list(names)})"
        out.append(f"{what} unavailable: {g['reason']}")
    return out


def _short_list(names, most=3):
    if len(names) <= most:
        return ", ".join(names)
    return ", ".join(names[:most]) + f" and {len(names) - most} more; --verbose names them"
