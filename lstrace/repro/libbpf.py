"""Open, load and attach a compiled BPF object through libbpf.so.1 (ctypes).

BCC cannot call kfuncs (bpf_res_spin_lock), so the workloads are plain
libbpf objects; this is the smallest wrapper that loads them.
"""
import ctypes
import os

from ..bpfsys import BPFError
from ..errors import Unavailable
from .build import FIX

_c = ctypes.c_void_p


class LibbpfMissing(Unavailable):
    pass


def log_reason(e: BPFError) -> str:
    """The most telling line of a failed open/load/attach's libbpf (verifier)
    log, for a one-line 'cannot run' reason."""
    lines = [line.strip() for line in e.log.splitlines() if line.strip()]
    for key in ("failed to find", "unknown func", "invalid func"):
        for line in lines:
            if key in line:
                return line[:200]
    for i, line in enumerate(lines):     # the verifier's last word
        if line.startswith("processed ") and i:
            return lines[i - 1][:200]
    return e.strerror or ""


_lib = None
_log = []
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def _printer(level, fmt, ap):
    # va_list arrives as a pointer on x86_64 (an array type) and on aarch64 (a 32-byte
    # struct, passed by reference under AAPCS64): hand it on to libc's vsnprintf.
    buf = ctypes.create_string_buffer(4096)
    _libc.vsnprintf(buf, len(buf), fmt, ctypes.c_void_p(ap))
    _log.append(buf.value.decode(errors="replace"))
    return 0


_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
_print_cb = _PRINT_FN(_printer)


def lib():
    global _lib
    if _lib is None:
        try:
            _lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        except OSError as e:
            raise LibbpfMissing(f"{e} (fix: `{FIX}`)") from None
        sig = {
            "bpf_object__open_file": (_c, [ctypes.c_char_p, _c]),
            "bpf_object__load": (ctypes.c_int, [_c]),
            "bpf_object__close": (None, [_c]),
            "bpf_object__find_program_by_name": (_c, [_c, ctypes.c_char_p]),
            "bpf_object__find_map_by_name": (_c, [_c, ctypes.c_char_p]),
            "bpf_program__fd": (ctypes.c_int, [_c]),
            "bpf_program__set_autoload": (ctypes.c_int, [_c, ctypes.c_bool]),
            "bpf_program__attach": (_c, [_c]),
            "bpf_link__destroy": (ctypes.c_int, [_c]),
            "bpf_map__fd": (ctypes.c_int, [_c]),
            "libbpf_set_print": (_c, [_c]),
        }
        for name, (res, args) in sig.items():
            f = getattr(_lib, name)
            f.restype, f.argtypes = res, args
        _lib.libbpf_set_print(ctypes.cast(_print_cb, _c))
    return _lib


class Object:
    """One loaded BPF object; programs are loaded together, attached on demand.
    Failures raise lstrace.bpfsys.BPFError with libbpf's log in .log."""

    def __init__(self, path, skip=()):
        L = lib()
        _log.clear()
        self._links = []
        self._obj = L.bpf_object__open_file(os.fsencode(path), None)
        if not self._obj:
            raise BPFError(ctypes.get_errno() or 22, f"open {path}", "".join(_log))
        for name in skip:          # programs this kernel cannot verify
            p = L.bpf_object__find_program_by_name(self._obj, name.encode())
            if p:
                L.bpf_program__set_autoload(p, False)
        _log.clear()
        err = L.bpf_object__load(self._obj)
        if err:
            log = "".join(_log)
            L.bpf_object__close(self._obj)
            self._obj = None
            raise BPFError(-err, f"load {os.path.basename(path)}", log)

    def _prog(self, name):
        p = lib().bpf_object__find_program_by_name(self._obj, name.encode())
        if not p:
            raise KeyError(f"no program {name}")
        return p

    def prog_fd(self, name) -> int:
        return lib().bpf_program__fd(self._prog(name))

    def map_fd(self, name) -> int:
        m = lib().bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise KeyError(f"no map {name}")
        return lib().bpf_map__fd(m)

    def attach(self, name):
        """Attach by section name (raw_tp/..., fentry/...); detached on close()."""
        _log.clear()
        link = lib().bpf_program__attach(self._prog(name))
        if not link:
            raise BPFError(ctypes.get_errno() or 22, f"attach {name}", "".join(_log))
        self._links.append(link)

    def detach(self):
        """Destroy every link: counters stop moving before they are read."""
        L = lib()
        for link in self._links:
            L.bpf_link__destroy(link)
        self._links = []

    def close(self):
        L = lib()
        self.detach()
        if self._obj:
            L.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
