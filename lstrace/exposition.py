"""A fast writer of the Prometheus text format (0.0.4) for lstrace's families.

prometheus_client's generate_latest validates and escapes every label pair of
every sample and formats every value through float(): ~8 us a series, 72 % of
a 256-CPU scrape (cProfile, issue 12).  lstrace's label sets are bounded and
repeat from scrape to scrape, so this writer renders each series' name and
label text once, keeps it in a cache, and per scrape only formats the
values.  Its output is generate_latest's for the same families except that
integer values are written as integers (1234567.0, not 1.234567e+06); it
parses to the same families and values with prometheus_client's parser and
passes promtool (tests/test_exporter.py), so it can replace generate_latest
on the hot path while gzip negotiation and the textfile writer stay
prometheus_client's (the HTTP server is lstrace.httpserver).
"""
import gzip

from prometheus_client.exposition import gzip_accepted
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"   # what this writes


def fmt_value(v):
    """A sample value.  Ints (counts) as exact decimal integers with ".0":
    prometheus_client's floatToGoString writes 1.234567e+06, which parses to
    the same float but costs 5x more (measured: 6.6 vs 0.8 ms for 8,000 values)."""
    if type(v) is int:
        return f"{v}.0"
    return floatToGoString(v)


def _escape(v):
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _labels(pairs):
    """'{a="x",b="y"}' with names sorted, as generate_latest writes them."""
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(pairs)) + "}"


class Renderer:
    """Renders lstrace.exporter.Family lists to text; caches label text.

    The cache holds one dict per family (label values -> "name{...} "), bounded
    by the label sets lstrace can produce (CPUs x probes x fixed tables), so it
    stops growing after the first scrapes."""

    def __init__(self, les, estimated_sum):
        self.les = les                  # histogram bucket `le` texts, "+Inf" last
        self.estimated_sum = estimated_sum   # log2 slots -> _sum
        self._prefix = {}       # family name -> {label values: "name{...} "}
        self._hist = {}         # family name -> {label values: [bucket prefixes..., count, sum]}

    def render(self, fams):
        out = []
        for f in fams:
            out.append(f.header())
            if f.type == "histogram":
                self._histogram(f, out)
            else:
                self._simple(f, out)
        return "".join(out).encode("utf-8")

    def _simple(self, f, out):
        name, names = f.sample_name(), f.labels
        cache = self._prefix.setdefault(name, {})
        get, append = cache.get, out.append
        for values, v in f.rows:
            p = get(values)
            if p is None:
                p = cache[values] = f"{name}{_labels(zip(names, values))} "
            # counts inline (most lines): fmt_value's int case without the call
            append(f"{p}{v}.0\n" if type(v) is int else f"{p}{fmt_value(v)}\n")

    def _histogram(self, f, out):
        les, estimated_sum = self.les, self.estimated_sum
        cache, names = self._hist.setdefault(f.name, {}), f.labels
        for values, slots in f.rows:
            pre = cache.get(values)
            if pre is None:
                pairs = list(zip(names, values))
                pre = [f"{f.name}_bucket{_labels(pairs + [('le', le)])} " for le in les]
                pre += [f"{f.name}_count{_labels(pairs)} ", f"{f.name}_sum{_labels(pairs)} "]
                cache[values] = pre
            acc, lines = 0, []
            for p, n in zip(pre, slots):
                acc += n
                lines.append(f"{p}{acc}.0")
            lines.append(f"{pre[-3]}{acc}.0")          # +Inf
            lines.append(f"{pre[-2]}{acc}.0")          # _count
            lines.append(pre[-1] + fmt_value(estimated_sum(slots)))
            out.append("\n".join(lines))
            out.append("\n")


class MetricsApp:
    """WSGI app serving `body()` (bytes of text format 0.0.4), gzip when the
    client accepts it, like prometheus_client's make_wsgi_app.  `body` is set
    once the probes are attached (the server is bound before that)."""

    def __init__(self, body=None):
        self.body = body

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET")])
            return [b""]
        if method != "GET":
            start_response("405 Method Not Allowed", [("Allow", "OPTIONS,GET")])
            return [f"# HTTP 405 Method Not Allowed: {method}; use OPTIONS or GET\n".encode()]
        if environ.get("PATH_INFO") == "/favicon.ico" or self.body is None:
            start_response("200 OK", [])
            return [b""]
        output = self.body()
        headers = [("Content-Type", CONTENT_TYPE)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING")):
            output = gzip.compress(output)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [output]
