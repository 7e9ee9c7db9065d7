"""Compile bpf/repro/*.bpf.c on first use into a cache directory.

The cache key hashes the sources, the clang version and the running kernel's
BTF (vmlinux.h comes from it), so one cache serves several kernels, e.g. the
lab guests that share this root read-only and set LSTRACE_CACHE to /tmp/...
"""
import errno
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .. import arch
from ..errors import LstraceError, Unavailable
from .host import kernel

SRC_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "bpf", "repro"))
DEFAULT_CACHE = "/var/cache/lstrace/repro"
FIX = "apt-get install -y clang llvm libbpf-dev"


class ToolMissing(Unavailable):
    """clang, bpftool or libbpf headers are absent: the message says how to fix it."""


class CompileError(LstraceError):
    pass


def cache_dir() -> str:
    d = os.environ.get("LSTRACE_CACHE") or DEFAULT_CACHE
    try:
        os.makedirs(d, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    # read-only root (lab guest) without LSTRACE_CACHE: /tmp is writable there
    d = os.path.join(tempfile.gettempdir(), "lstrace-repro-cache")
    os.makedirs(d, exist_ok=True)
    return d


def check_tools():
    missing = [t for t in ("clang", "bpftool") if not shutil.which(t)]
    if not os.path.exists("/usr/include/bpf/bpf_helpers.h"):
        missing.append("libbpf-dev")
    if missing:
        raise ToolMissing(f"missing {', '.join(missing)}: run `{FIX}`")


_clang_version = None


def clang_version() -> str:
    global _clang_version
    if _clang_version is None:
        _clang_version = subprocess.run(["clang", "--version"], capture_output=True,
                                         text=True).stdout.splitlines()[0]
    return _clang_version


def _digest(*chunks) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c if isinstance(c, bytes) else c.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _btf_hash() -> str:
    with open(kernel().btf_path, "rb") as f:
        return _digest(f.read())


def _atomic_write(path, data: bytes):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)    # concurrent builders: last rename wins, content is equal


def vmlinux_h(cache: str, btf_hash: str) -> str:
    """Directory holding vmlinux.h for the running kernel (generated, never committed)."""
    d = os.path.join(cache, f"btf-{btf_hash}")
    path = os.path.join(d, "vmlinux.h")
    if not os.path.exists(path):
        os.makedirs(d, exist_ok=True)
        r = subprocess.run(["bpftool", "btf", "dump", "file", kernel().btf_path, "format", "c"],
                           capture_output=True)
        if r.returncode:
            raise CompileError(f"bpftool btf dump failed: {r.stderr.decode()[-300:]}")
        _atomic_write(path, r.stdout)
    return d


# the errno numbers the repro's C names, from Python (one source): -D flags
ERRNOS = ("EPERM", "ENOENT", "ENOMEM", "EEXIST", "EBUSY", "EDEADLK", "ETIMEDOUT")


def errno_flags():
    return [f"-D{n}={getattr(errno, n)}" for n in ERRNOS]


def object_path(name: str) -> str:
    """Path of the compiled bpf/repro/<name>.bpf.c, building it if needed."""
    check_tools()
    src = os.path.join(SRC_DIR, f"{name}.bpf.c")
    headers = sorted(f for f in os.listdir(SRC_DIR) if f.endswith(".h"))
    texts = [Path(src).read_bytes()] + [Path(SRC_DIR, h).read_bytes() for h in headers]
    cache = cache_dir()
    btf = _btf_hash()
    key = _digest(name, clang_version(), btf, *errno_flags(), *texts)
    out = os.path.join(cache, f"{name}-{key}.o")
    if os.path.exists(out):
        return out
    inc = vmlinux_h(cache, btf)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".o")
    os.close(fd)
    cmd = ["clang", "-target", "bpf", "-g", "-O2", f"-D__TARGET_ARCH_{arch.current().target}",
           f'-DLSTRACE_TICK="{arch.current().tick[1]}"', *errno_flags(),
           "-I", inc, "-I", SRC_DIR, "-c", src, "-o", tmp]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        os.unlink(tmp)
        raise CompileError(f"clang failed for {name}.bpf.c:\n{r.stderr[-2000:]}")
    os.replace(tmp, out)
    return out
