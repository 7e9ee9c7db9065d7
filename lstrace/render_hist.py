"""Pure rendering of lstrace's log2 histograms (BCC print_log2_hist look).

lstrace's slots (lstrace.layout): slot 0 holds 0..1 ns, slot s holds
(2^(s-1), 2^s] ns.  Integer nanoseconds in slot s >= 1 are therefore
2^(s-1)+1 .. 2^s, and that is the range printed ("     nsecs  : count
distribution" rows), unlike BCC whose slot i is [2^(i-1), 2^i - 1].
"""
UNITS = {"ns": (1, "nsecs"), "us": (1000, "usecs"), "ms": (1000000, "msecs")}
STARS_MAX = 40


def slot_bounds(s):
    """(low, high) in ns: slot 0 is [0, 1], slot s is (2^(s-1), 2^s]."""
    if s == 0:
        return 0, 1
    return 1 << (s - 1), 1 << s


def percentile(slots, q):
    """Estimate the q-quantile (0..1) in ns by linear interpolation inside the slot."""
    total = sum(slots)
    if not total:
        return None
    want = q * total
    seen = 0
    for s, n in enumerate(slots):
        if n and seen + n >= want:
            lo, hi = slot_bounds(s)
            return lo + (hi - lo) * max(want - seen, 0) / n
        seen += n
    lo, hi = slot_bounds(len(slots) - 1)
    return float(hi)


def _stars(val, val_max, width):
    if not val_max:
        return ""
    n = min(width, width * val // val_max)     # BCC's _stars: floor
    text = "*" * n
    if val > val_max:
        text = text[:-1] + "+"
    return text


def _fmt(ns, div):
    if div == 1:
        return str(int(ns))
    v = ns / div
    return str(int(v)) if v == int(v) else f"{v:.6g}"


def hist_lines(slots, unit="ns"):
    """BCC-style rows, from the first to the last non-empty slot (all-empty: [])."""
    div, name = UNITS[unit]
    used = [s for s, n in enumerate(slots) if n]
    if not used:
        return []
    first, last = used[0], used[-1]
    val_max = max(slots)
    wide = last > 32
    if wide:
        header = "               %-29s : count     distribution" % name
        body, stars = "%20s -> %-20s : %-8d |%-*s|", STARS_MAX // 2
    else:
        header = "     %-19s : count     distribution" % name
        body, stars = "%10s -> %-10s : %-8d |%-*s|", STARS_MAX
    out = [header]
    for s in range(first, last + 1):
        lo, hi = slot_bounds(s)
        lo_int = 0 if s == 0 else lo + (1 if div == 1 else 0)
        out.append(body % (_fmt(lo_int, div), _fmt(hi, div), slots[s], stars,
                           _stars(slots[s], val_max, stars)))
    return out


def summary(slots, unit="ns"):
    div, _ = UNITS[unit]
    p50, p99 = percentile(slots, 0.5), percentile(slots, 0.99)
    return {"count": sum(slots),
            "p50": None if p50 is None else round(p50 / div, 6),
            "p99": None if p99 is None else round(p99 / div, 6)}


def summary_line(slots, unit="ns"):
    s = summary(slots, unit)
    if not s["count"]:
        return "count 0"
    return f"count {s['count']}  p50 ~{s['p50']:.6g} {unit}  p99 ~{s['p99']:.6g} {unit}"


def hist_json(slots, unit="ns"):
    """{"count", "p50", "p99", "buckets": [{"slot", "gt_ns", "le_ns", "count"}]} with
    non-empty buckets only; p50/p99 in `unit`; slot 0 has gt_ns -1 (it holds 0 and 1)."""
    out = summary(slots, unit)
    out["buckets"] = []
    for s, n in enumerate(slots):
        if n:
            lo, hi = slot_bounds(s)
            out["buckets"].append({"slot": s, "gt_ns": -1 if s == 0 else lo, "le_ns": hi,
                                   "count": n})
    return out


def add_slots(a, b):
    if not a:
        return list(b)
    return [x + y for x, y in zip(a, b)]
