"""Start-up checks: each missing prerequisite (a known architecture,
privileges, BCC, BTF, kernel headers) becomes one clear LstraceError with its exit code.

Used by Session (privileges, in the long-running process), the loader child
(BCC, BTF, headers: only it compiles), doctor and hist.  Nothing here imports
BCC except import_bcc(), which only the loader child and doctor call.
"""
import os

from . import arch
from . import headers as headersmod
from .errors import PermissionDenied, Unavailable

CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39

BCC_MISSING = ("BCC is not installed for this Python: apt-get install python3-bpfcc "
               "(Debian/Ubuntu; the PyPI package named bcc is something else) and "
               "use a venv made with --system-site-packages")


def effective_caps():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def check_arch():
    """Unavailable (exit 69) on an architecture lstrace/arch.py lacks, before any syscall."""
    arch.current()


def check_privileges():
    """The architecture first (every command that needs privileges makes bpf() calls)."""
    check_arch()
    caps = effective_caps()
    has = lambda c: bool(caps & (1 << c))  # noqa: E731
    if os.geteuid() == 0 and has(CAP_SYS_ADMIN):
        return
    if has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON)):
        return
    raise PermissionDenied("lstrace needs root (or CAP_BPF and CAP_PERFMON) to load BPF "
                           "programs: run it with sudo")


def import_bcc():
    """The bcc module (maps libbcc and LLVM: the loader child and doctor only)."""
    try:
        import bcc
    except ImportError:
        raise Unavailable(BCC_MISSING)
    return bcc


def check_btf(kernel):
    """Raises Unavailable without BTF (Kernel.btf says why)."""
    kernel.btf


def prepare_headers(kernel):
    h = headersmod.find(kernel.release)
    if h is None:
        raise Unavailable(f"no kernel headers for {kernel.release} and none to fall back to: "
                          "install linux-headers-$(uname -r), or any linux-headers package "
                          "(scripts/install.sh does this)")
    return h
