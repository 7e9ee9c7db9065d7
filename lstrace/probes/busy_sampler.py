"""busy_sampler: the task / cgroup local-storage busy counters (generations
A/B), sampled at each timer interrupt on a raw tracepoint (lstrace/arch.py's
tick: irq_vectors:local_timer_entry on x86-64, timer:hrtimer_expire_entry on
arm64; it runs even while a bpf() map syscall holds a counter).
C: bpf/probes/busy_sampler.bpf.c."""
from .. import arch
from ..family import Family
from ..layout import BUSY_COUNTERS
from . import trial
from .tracepoint import TracepointProbe

NAME = "busy_sampler"
_TICK = (arch.lookup() or next(iter(arch.TABLE.values()))).tick
PROBE = TracepointProbe(NAME, (_TICK,),
                        "samples the task/cgroup storage busy counters at each timer tick",
                        (("raw_tp", _TICK[1], "lst_busy_sample"),))
NAMES = (NAME,)
ORDER = 50
COUNTS = ("busy_samples",)


def plan(kernel, p, mode="auto"):
    if not trial.try_events(kernel, p, PROBE.events):
        return p
    if kernel.generation == "C":
        p.reason = "generation C (7.0+) has no busy counters"
        return p
    if not kernel.percpu_var_addr("bpf_task_storage_busy"):
        p.reason = "busy counters not readable: " + (
            "kallsyms has no per-CPU data symbols (CONFIG_KALLSYMS_ALL off)"
            if kernel.kallsyms.readable else
            "kallsyms addresses hidden (kptr_restrict; no CAP_SYSLOG)")
        return p
    p.mode = "tracepoint"
    return p


# ---- counters: ticks sampled, and those in which each counter was held
def blocks(nprobes):
    return [("busy_samples", ()),
            ("busy_held", (("N_BUSY", len(BUSY_COUNTERS)),))]


# ---- C (BUSY_TASK / BUSY_CGRP, the counters' addresses, are core defines:
# gen A's task get reads them too)
C_FRAGMENT = "busy_sampler.bpf.c"


def defines(kernel, plans):
    """BUSY_IDX_TASK, BUSY_IDX_CGRP: each counter's index in busy_held."""
    return {f"BUSY_IDX_{n.upper()}": i for i, n in enumerate(BUSY_COUNTERS)}


# ---- decode
def decode(snap, cpu, lay, words, attached, latency):
    if NAME not in attached:
        return
    held = lay.block(words, "busy_held")
    snap.busy_samples[cpu] = (lay.block(words, "busy_samples")[0],
                              dict(zip(BUSY_COUNTERS, held)))


# ---- metric families (of what was sampled: absent without the probe)
def families(snap, attached, per_cpu_latency):
    bs = Family("lstrace_busy_samples", "counter",
                "Timer-tick samples of the local-storage busy counters.", ["cpu"])
    bh = Family("lstrace_busy_held_samples", "counter",
                "Samples in which a busy counter was held.", ["cpu", "counter"])
    for cpu, (samples, held) in sorted(snap.busy_samples.items()):
        bs.add([cpu], samples)
        for counter in BUSY_COUNTERS:
            bh.add([cpu, counter], held.get(counter, 0))
    return [bs, bh]


# ---- hist
NO_HIST = "busy_sampler samples counters, it has no latency histogram"
