"""What `lstrace serve` answers for a hand-built Snapshot, parsed (fakes for
formatting: tests/test_exporter.py and the per-probe tests in tests/probes/)."""
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lstrace import exporter
from lstrace.layout import NSLOTS, slot_of
from lstrace.snapshot import ProbeStatus, Snapshot


def make_snap(**kw):
    base = dict(taken=1.0, cpus=[0, 1], kernel={"release": "6.18.0", "generation": "B"},
                probes=[ProbeStatus("task_storage_get", "helper", "fentry", True),
                        ProbeStatus("rqspinlock", "tracepoint", "tracepoint", True),
                        ProbeStatus("busy_sampler", "tracepoint", "unavailable", False, "no")])
    base.update(kw)
    return Snapshot(**base)


def slots_with(values_ns):
    s = [0] * NSLOTS
    for v in values_ns:
        s[slot_of(v)] += 1
    return s


def parse(text):
    """{(sample name, frozenset(labels)): value} and {family: type} of an exposition."""
    out, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out, types


def samples(snap, per_cpu_latency=False):
    """What `lstrace serve` answers over HTTP (the fast writer), parsed."""
    c = exporter.SnapshotCollector(lambda: snap, per_cpu_latency=per_cpu_latency)
    text = c.render().decode()
    return parse(text)[0], text


def client_text(snap, per_cpu_latency=False):
    """prometheus_client's generate_latest of the same collector (textfile, --once)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(exporter.SnapshotCollector(lambda: snap, per_cpu_latency=per_cpu_latency))
    return generate_latest(reg).decode()


def get(smp, name, **labels):
    return smp[(name, frozenset(labels.items()))]
