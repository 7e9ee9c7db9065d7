"""A metric family as plain rows, and the log2 histogram's Prometheus form.

Shared by lstrace.exporter (which lists the families of a scrape) and the
probe modules (lstrace.probes.*: each builds its own families), so that a
probe module imports no core module (they import the probes).

Histograms.  lstrace counts log2 slots: slot 0 holds 0..1 ns, slot s holds
(2^(s-1), 2^s] ns, so slot s maps exactly onto the cumulative bucket
le = 2^s ns (written in seconds); +Inf equals _count.  _sum is an estimate
(lstrace.exporter explains it).
"""
from itertools import chain

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)

from .layout import NSLOTS

NS = 1e-9


def slot_upper_ns(s):
    """Upper bound (inclusive) of log2 slot s in ns: a Prometheus `le`."""
    return 1 << s


def slot_mid_ns(s):
    return 0.5 if s == 0 else 0.75 * (1 << s)


def le_text(s):
    """The `le` label of slot s, in seconds, as prometheus_client would print it."""
    return _fmt(slot_upper_ns(s) * NS)


def _fmt(v):
    # repr() of a float is the shortest round-tripping text: 1e-09, 2e-09, 4.096e-06, ...
    return repr(float(v))


LES = tuple(le_text(s) for s in range(NSLOTS)) + ("+Inf",)
_MIDS = tuple(slot_mid_ns(s) * NS for s in range(NSLOTS))


def bucket_les():
    """The `le` of every bucket, +Inf last."""
    return LES


def estimated_sum(slots):
    """_sum in seconds: every observation at its slot's midpoint."""
    return sum(n * m for n, m in zip(slots, _MIDS) if n)


def histogram_buckets(slots):
    """log2 slots -> ([(le, cumulative count), ..., ("+Inf", total)], estimated sum in s)."""
    buckets, acc = [], 0
    for le, n in zip(LES, slots):
        acc += n
        buckets.append((le, acc))
    buckets.append(("+Inf", acc))
    return buckets, estimated_sum(slots)


def sum_slots(rows):
    """Column sums of NSLOTS-long count lists (CPUs' slots -> one histogram).
    Strided slices of one flat list: 3.3 ms for 19 probes x 256 CPUs, where
    sum(zip(*rows)) takes 4.8 ms."""
    flat = list(chain.from_iterable(rows))
    return [sum(flat[s::NSLOTS]) for s in range(NSLOTS)]


class Family:
    """One metric family: rows of (label values, value) or, for histograms,
    (label values, log2 slots).  Label values are written as str() of them
    (cpu stays an int: a snapshot's own keys serve as label values, no tuple
    is built per row).  Counter names carry no _total (as in
    prometheus_client); the renderers add it."""
    __slots__ = ("name", "type", "help", "labels", "rows")

    def __init__(self, name, type_, help_, labels=()):
        self.name, self.type, self.help, self.labels = name, type_, help_, tuple(labels)
        self.rows = []

    def add(self, values, value):
        self.rows.append((tuple(values), value))

    def sample_name(self):
        return self.name + "_total" if self.type == "counter" else self.name

    def header(self):
        n = self.sample_name()
        h = self.help.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {n} {h}\n# TYPE {n} {self.type}\n"

    def to_client(self):
        """The same family as a prometheus_client metric family."""
        cls = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
               "histogram": HistogramMetricFamily}[self.type]
        f = cls(self.name, self.help, labels=list(self.labels))
        for values, v in self.rows:
            values = [str(x) for x in values]
            if self.type == "histogram":
                buckets, est = histogram_buckets(v)
                f.add_metric(values, buckets, est)
            else:
                f.add_metric(values, v)
        return f
