"""What lstrace needs from the host, and each missing piece said in one line.

`lstrace doctor` prints these lines (JSON key "missing"): kernel headers, BTF,
tracefs, debugfs and capabilities.  In a container most of them are host mounts
or capabilities the runtime did not grant, so the line says which mount or
capability (deploy/daemonset.yaml grants them all).
"""
import os

from . import headers as headersmod
from .preflight import effective_caps

CAPS = {"SYS_ADMIN": 21, "SYSLOG": 34, "PERFMON": 38, "BPF": 39}
# capability -> what lstrace cannot do without it (README "Capabilities" measured these)
CAP_USES = {
    "BPF": "cannot load BPF programs",
    "PERFMON": "cannot attach tracing programs",
    "SYS_ADMIN": "cannot read other BPF programs' stats (--all-programs) or mount tracefs",
    "SYSLOG": "kallsyms addresses are hidden: failure sites and per-CPU busy counters "
              "go unnamed",
}


def _in_container(path):
    return f"in a container, mount the host's {path} (deploy/daemonset.yaml does)"


def _line(piece, text, hint=None):
    return {"piece": piece, "text": f"{text}: {hint}" if hint else text}


def btf(kernel):
    if kernel.has_btf:
        return None
    text = f"no BTF at {kernel.btf_path}"
    if os.path.dirname(kernel.btf_path) != "/sys/kernel/btf":
        return _line("btf", text)
    return _line("btf", text, "the kernel needs CONFIG_DEBUG_INFO_BTF=y, or "
                 + _in_container("/sys/kernel/btf"))


def tracefs(kernel):
    if kernel.tracefs:
        return None
    return _line("tracefs", "no tracefs at /sys/kernel/tracing (tracepoint probes cannot "
                 "attach)", "mount -t tracefs nodev /sys/kernel/tracing, or "
                 + _in_container("/sys/kernel/tracing"))


def fs_type(path):
    """The file system type mounted at `path` (the last mount wins), or None."""
    kind = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if left.split()[4] == path:
                    kind = right.split()[0]
    except (OSError, IndexError):
        pass
    return kind


def debugfs():
    if fs_type("/sys/kernel/debug") == "debugfs":
        return None
    return _line("debugfs", "no debugfs at /sys/kernel/debug (the preemption model comes "
                 "from the boot arguments or the kernel config instead)",
                 "mount -t debugfs nodev /sys/kernel/debug, or "
                 + _in_container("/sys/kernel/debug"))


def headers(kernel):
    if headersmod.find(kernel.release) is not None:
        return None
    return _line("headers", f"no kernel headers: none at /lib/modules/{kernel.release}/build "
                 f"nor {headersmod.SRC}/linux-headers-*, so BCC cannot compile",
                 "the lstrace image ships its own; on a host install linux-headers-"
                 "$(uname -r) or any linux-headers package (scripts/install.sh does)")


def capabilities():
    caps = effective_caps()
    lacking = [name for name, bit in CAPS.items() if not caps & (1 << bit)]
    if not lacking:
        return None
    return _line("capabilities", "missing " + ", ".join(f"CAP_{c} ({CAP_USES[c]})"
                                                       for c in lacking))


def missing(kernel):
    """Each missing piece once, as {"piece", "text"}; [] when nothing is missing."""
    return [m for m in (headers(kernel), btf(kernel), tracefs(kernel), debugfs(),
                        capabilities()) if m]
