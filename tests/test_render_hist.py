"""`lstrace hist` rendering: slot seams, BCC bar style, percentiles, JSON."""
import json

import pytest

from lstrace import hist as histmod
from lstrace import render_hist as rh
from lstrace.layout import NSLOTS, slot_of
from lstrace.snapshot import ProbeStatus, Snapshot


def slots(**kw):
    s = [0] * NSLOTS
    for k, v in kw.items():
        s[int(k[1:])] = v
    return s


@pytest.mark.parametrize("ns,slot", [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3),
                                     (9, 4), (1024, 10), (1025, 11), (2 ** 20, 20)])
def test_slot_seams_match_the_bpf_side(ns, slot):
    # bpf: slot 0 holds v <= 1, slot s holds 2^(s-1) < v <= 2^s
    assert slot_of(ns) == slot      # the one rule: lstrace.layout.slot_of
    lo, hi = rh.slot_bounds(slot)
    assert (lo <= ns <= hi) if slot == 0 else (lo < ns <= hi)


def test_bcc_look_and_our_ranges():
    lines = rh.hist_lines(slots(s0=1, s1=2, s2=4, s3=8, s10=40))
    assert lines[0] == "     nsecs               : count     distribution"
    assert lines[1] == "         0 -> 1          : 1        |%-40s|" % "*"
    assert lines[2] == "         2 -> 2          : 2        |%-40s|" % "**"
    assert lines[3] == "         3 -> 4          : 4        |%-40s|" % "****"
    assert lines[4] == "         5 -> 8          : 8        |%-40s|" % ("*" * 8)
    # empty slots between are printed, like BCC
    assert lines[5].startswith("         9 -> 16         : 0 ")
    assert lines[-1] == "       513 -> 1024       : 40       |%s|" % ("*" * 40)
    assert len(lines) == 1 + 11


def test_leading_empty_slots_stripped_and_units():
    lines = rh.hist_lines(slots(s11=3, s12=1), unit="us")
    assert lines[0] == "     usecs               : count     distribution"
    assert lines[1].split()[:5] == ["1.024", "->", "2.048", ":", "3"]
    assert lines[2].split()[:3] == ["2.048", "->", "4.096"]
    assert rh.hist_lines([0] * NSLOTS) == []
    ms = rh.hist_lines(slots(s20=1), unit="ms")
    assert ms[1].split()[:3] == ["0.524288", "->", "1.04858"]


def test_wide_layout_beyond_slot_32():
    lines = rh.hist_lines(slots(s33=2))
    assert lines[0].startswith("               nsecs")
    assert "|" + "*" * 20 + "|" in lines[-1]


def test_percentiles():
    # 100 values in (512, 1024]: p50 is halfway inside the slot
    assert rh.percentile(slots(s10=100), 0.5) == pytest.approx(768)
    assert rh.percentile(slots(s10=100), 0.99) == pytest.approx(512 + 512 * 0.99)
    # 90 in slot 4 (8, 16], 10 in slot 20: p50 in slot 4, p99 in slot 20
    s = slots(s4=90, s20=10)
    assert 8 < rh.percentile(s, 0.5) <= 16
    assert 2 ** 19 < rh.percentile(s, 0.99) <= 2 ** 20
    assert rh.percentile(s, 0.99) == pytest.approx(2 ** 19 + 2 ** 19 * 0.9)
    assert rh.percentile([0] * NSLOTS, 0.5) is None
    summ = rh.summary(slots(s10=100), unit="us")
    assert summ == {"count": 100, "p50": 0.768, "p99": pytest.approx(1.01888)}
    assert rh.summary_line(slots(s10=100), "us") == "count 100  p50 ~0.768 us  p99 ~1.01888 us"


def _snap():
    s = Snapshot(taken=1.0, cpus=[0, 1], kernel={}, probes=[
        ProbeStatus("rqspinlock", "tracepoint", "tracepoint", True)])
    s.rq_wait = {0: slots(s12=3, s13=1), 1: slots(s14=5)}
    return s


def test_per_cpu_sum_and_cpu_selection():
    s = _snap()
    per = histmod.histograms(s, "rqspinlock", per_cpu=True)
    assert [c for c, _ in per] == [0, 1]
    assert [sum(v) for _, v in per] == [4, 5]
    (allc, total), = histmod.histograms(s, "rqspinlock")
    assert allc == "all" and total == slots(s12=3, s13=1, s14=5)
    (one, v), = histmod.histograms(s, "rqspinlock", cpu=1)
    assert one == 1 and sum(v) == 5
    text = histmod.text_of(per, "ns")
    assert "\ncpu = 0\n     nsecs" in text and "\ncpu = 1\n" in text
    assert "count 4  p50" in text and "count 5  p50" in text


def test_hist_json_keys():
    s = _snap()
    obj = json.loads(json.dumps(histmod.json_of(
        "rqspinlock", "tracepoint", histmod.histograms(s, "rqspinlock", per_cpu=True), "us", 2)))
    assert set(obj) == {"probe", "mode", "what", "unit", "interval_s", "histograms"}
    for k in obj:
        assert f'"{k}"' in histmod.__doc__
    h0 = obj["histograms"][0]
    assert set(h0) == {"cpu", "count", "p50", "p99", "buckets"}
    assert h0["cpu"] == 0 and h0["count"] == 4
    assert h0["buckets"] == [{"slot": 12, "gt_ns": 2048, "le_ns": 4096, "count": 3},
                             {"slot": 13, "gt_ns": 4096, "le_ns": 8192, "count": 1}]
    assert sum(b["count"] for b in h0["buckets"]) == h0["count"]


def test_bad_names_are_usage_errors():
    from lstrace.errors import EXIT_USAGE, UsageError
    for name in ("bogus", "bpf_syscall", "busy_sampler"):
        with pytest.raises(UsageError) as e:
            histmod.check_name(name)
        assert e.value.exit_code == EXIT_USAGE
    histmod.check_name("rqspinlock")
    histmod.check_name("task_storage_get")
