"""What the running kernel offers: release, BTF, local-storage generation,
prototypes, tracepoints and symbols.  Everything is read from the kernel
itself (BTF, kallsyms, tracefs), never guessed from the version string.
"""
import gzip
import os
import platform
from functools import cached_property
from pathlib import Path

from . import btf as btfmod
from .errors import Unavailable
from .kallsyms import Kallsyms

# local storage's recursion protection (kernel/bpf/bpf_task_storage.c); C: the series
# "Remove task and cgroup local storage percpu counters" (merged for v7.0)
GENERATIONS = {
    "A": "busy counter, no _recur helpers (5.13-6.1)",
    "B": "busy counters + _recur helpers (6.2-6.19)",
    "C": "rqspinlock in local storage, no busy counters (7.0+)",
}


def decide_generation(has_func, has_var):
    """From BTF, never the version string: `_recur` present -> B; busy VAR
    without `_recur` -> A; neither -> C."""
    if has_func("bpf_task_storage_get_recur"):
        return "B"
    if has_var("bpf_task_storage_busy"):
        return "A"
    return "C"


def tracefs_root():
    """Mount tracefs if nobody has (perf and BCC do the same)."""
    for p in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        if os.path.isdir(f"{p}/events"):
            return p
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"nodev", b"/sys/kernel/tracing", b"tracefs", 0, None) == 0:
            return "/sys/kernel/tracing"
    except OSError:
        pass
    return None


class Kernel:
    """Facts about one kernel; `btf_path` and friends are overridable so
    tests (and users) can point lstrace at other files."""

    def __init__(self, btf_path="/sys/kernel/btf/vmlinux", kallsyms_path="/proc/kallsyms",
                 release=None):
        self.btf_path = btf_path
        self.kallsyms_path = kallsyms_path
        self.release = release or platform.release()

    @property
    def has_btf(self):
        return os.path.exists(self.btf_path)

    @cached_property
    def btf(self):
        if not self.has_btf:
            from .prereqs import btf as missing_btf
            raise Unavailable(missing_btf(self)["text"])
        try:
            return btfmod.BTF.load(self.btf_path)
        except (OSError, btfmod.BTFError) as e:
            raise Unavailable(f"cannot read BTF at {self.btf_path}: {e}")

    @cached_property
    def generation(self):
        return decide_generation(self.btf.has_func, self.btf.has_var)

    def prototype(self, func):
        return self.btf.prototype(func)

    def has_func(self, func):
        return self.btf.has_func(func)

    @cached_property
    def kallsyms(self):
        try:
            return Kallsyms.load(self.kallsyms_path)
        except OSError:
            return Kallsyms()

    @property
    def percpu_offsets_addr(self):
        """Address of __per_cpu_offset[], when kallsyms has data symbols
        (CONFIG_KALLSYMS_ALL); else 0.  Per-CPU variables are read through it."""
        return self.kallsyms.data.get("__per_cpu_offset", 0)

    def percpu_var_addr(self, name):
        """Address of a per-CPU variable lstrace can read (see
        percpu_offsets_addr); else None."""
        if self.percpu_offsets_addr and name in self.kallsyms.data and self.btf.has_var(name):
            return self.kallsyms.data[name]
        return None

    @cached_property
    def tracefs(self):
        return tracefs_root()

    def has_tracepoint(self, category, event):
        return bool(self.tracefs) and os.path.isdir(f"{self.tracefs}/events/{category}/{event}")

    @cached_property
    def possible_cpus(self):
        return _parse_cpu_list(Path("/sys/devices/system/cpu/possible").read_text())

    @cached_property
    def online_cpus(self):
        return _parse_cpu_list(Path("/sys/devices/system/cpu/online").read_text())

    @cached_property
    def preemption(self):
        """'none' / 'voluntary' / 'full' / 'lazy' as the kernel runs now: debugfs,
        else the preempt= boot argument, else the build's preemption model
        (/proc/config.gz, /boot/config-RELEASE), else 'unknown'."""
        try:
            text = Path("/sys/kernel/debug/sched/preempt").read_text()
            return text[text.index("(") + 1:text.index(")")]
        except (OSError, ValueError):
            pass
        try:
            for arg in Path("/proc/cmdline").read_text().split():
                if arg.startswith("preempt=") and arg[8:] in ("none", "voluntary", "full",
                                                              "lazy"):
                    return arg[8:]
        except OSError:
            pass
        models = {"CONFIG_PREEMPT_NONE=y": "none", "CONFIG_PREEMPT_VOLUNTARY=y": "voluntary",
                  "CONFIG_PREEMPT=y": "full", "CONFIG_PREEMPT_LAZY=y": "lazy",
                  "CONFIG_PREEMPT_RT=y": "full"}
        for path in ("/proc/config.gz", f"/boot/config-{self.release}"):
            try:
                opener = gzip.open if path.endswith(".gz") else open
                with opener(path, "rt") as f:
                    for line in f:
                        if line.strip() in models:
                            return models[line.strip()]
            except OSError:
                pass
        v = platform.version()
        return "full" if "PREEMPT " in v + " " and "PREEMPT_DYNAMIC" not in v else "unknown"

    def summary(self):
        return {"release": self.release, "generation": self.generation,
                "generation_text": GENERATIONS[self.generation], "btf": self.btf_path,
                "cpus_possible": len(self.possible_cpus), "cpus_online": len(self.online_cpus),
                "preemption": self.preemption,
                "kallsyms_all": bool(self.percpu_offsets_addr)}


def _parse_cpu_list(text):
    cpus = []
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            cpus.extend(range(int(a), int(b) + 1))
        elif part:
            cpus.append(int(part))
    return cpus
