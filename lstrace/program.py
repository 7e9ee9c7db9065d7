"""Generate lstrace's BPF program for the running kernel from a plan.

The program is assembled from fragments: bpf/lstrace.bpf.c (the head, with
the structs generated from Python), the core every probe shares (bpf/core/,
CORE_FRAGMENTS), then each planned probe module's (lstrace/probes/) fragment
in bpf/probes/ and generated glue (the helper family: one exit program, and an
entry program where needed, per planned function, declared with the exact
argument count and return type read from BTF: bpf_local_storage_update has
had 4, 5 and 6 arguments).  The defines are the core's (dimensions, addresses
from kallsyms) and each planned probe's (codes, kernel struct offsets from
BTF, ...): every number the C shares with Python comes from here.
"""
import sys
from pathlib import Path

from . import counters, decode, probes
from .layout import BUSY_COUNTERS
from .probes.rqspinlock_kernel import N_RANGES, kind_defines

# the core's C (bpf/core/), in this order after the head: each uses the ones before
CORE_FRAGMENTS = ("state", "guard", "hist", "percpu", "rqheld", "frames", "events")


def source_dir():
    """bpf/ beside the package (checkout, editable install) or installed data."""
    for d in (Path(__file__).resolve().parent.parent / "bpf",
              Path(sys.prefix) / "share" / "lstrace" / "bpf"):
        if (d / "lstrace.bpf.c").exists():
            return d
    raise FileNotFoundError("bpf/lstrace.bpf.c not found")


def attach_points(plan, compiled, latency=False):
    """[(kind, event, function)] of one planned probe: what is attached and
    detached, in this order (entry before exit)."""
    return probes.module_of(plan.name, plan.kind).attach_points(plan, compiled, latency)


def roles(plans, compiled, latency=False):
    """{program function: (probe, "entry" | "exit")} of the attached probes whose
    exit program's recursion_misses are calls the kernel did not let lstrace see."""
    out = {}
    for p in plans:
        m = probes.module_of(p.name, p.kind)
        if not p.available or not m.MISSED_CALLS:
            continue
        points = m.attach_points(p, compiled, latency)
        for i, (_kind, _event, fn) in enumerate(points):
            out[fn] = (p.name, "exit" if i == len(points) - 1 else "entry")
    return out


def defines(kernel, plans, latency=False):
    """The core's defines and each planned probe module's."""
    d = {"N_RANGES": N_RANGES,
         "N_EVENTS": decode.N_EVENTS, "STACK_DEPTH": decode.STACK_DEPTH,
         "WITH_LATENCY": int(latency)}
    d["PCPU_OFFSETS"] = f"{kernel.percpu_offsets_addr:#x}ULL"
    d.update(kind_defines(kernel))      # bpf/core/rqheld.bpf.c: AA / ABBA / nmi
    # the busy counters (BUSY_TASK, BUSY_CGRP): gen A's task get (helpers) and
    # busy_sampler read them
    for name in BUSY_COUNTERS:
        a = kernel.percpu_var_addr(f"bpf_{name}_storage_busy")
        d[f"BUSY_{name.upper()}"] = f"{a:#x}ULL" if a else 0
    # failure events' sources: each module's first index (probes.EVENT_BASES)
    d.update({f"EVENTS_{name.upper()}": base for name, base in probes.EVENT_BASES.items()})
    for m in probes.MODULES:
        mine = probes.plans_of(m, plans)
        if mine:
            d.update(m.defines(kernel, mine))
    return d


def fragments(m):
    """A probe module's C files in bpf/probes/, in order (C_FRAGMENT: a name,
    a tuple of names or None)."""
    f = m.C_FRAGMENT
    return () if not f else ((f,) if isinstance(f, str) else tuple(f))


def build(kernel, plans, fallback=False, latency=False):
    """(C text, cflags, layout) for the planned probes.  With `fallback`, fentry
    probes get kprobe programs too (BCC loads only what is attached): a probe
    whose fentry attach fails after a good trial can still fall back."""
    lay = counters.Layout(len(probes.HELPERS))
    src = source_dir()
    text = (src / "lstrace.bpf.c").read_text().replace(
        "/* @GENERATED@ */\n", lay.c_struct() + decode.c_structs(), 1)
    text += "".join("\n" + (src / "core" / f"{name}.bpf.c").read_text()
                    for name in CORE_FRAGMENTS)
    text += "\n/* ---- generated probe glue */\n"
    for m in probes.MODULES:
        mine = probes.plans_of(m, plans)
        if not mine:
            continue
        text += "".join("\n" + (src / "probes" / f).read_text() for f in fragments(m))
        text += "\n".join(m.glue(kernel, mine, latency, fallback))
    # macros with spaces (switch cases) go into the text, the rest are -D flags
    d = defines(kernel, plans, latency)
    head = "".join(f"#define {k} {v}\n" for k, v in d.items() if " " in str(v))
    flags = ["-Wno-pass-failed"] + lay.cflags() + [f"-D{k}={v}" for k, v in d.items() if " " not in str(v)]
    return head + text, flags, lay
