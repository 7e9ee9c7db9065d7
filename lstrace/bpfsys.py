"""Thin ctypes wrappers around bpf(2) for lstrace's own programs.

BCC compiles and attaches lstrace's programs; this module covers what BCC's
Python API lacks: trial attaches of a two-instruction program to one exact
kernel function (libbpf-tools' fentry_can_attach idea), whole-value reads of
per-CPU maps in one syscall, program statistics and BPF_ENABLE_STATS.
Beside it: lstrace/syscalls.py (syscall numbers, from arch.py),
lstrace/perfsys.py (perf events), lstrace/bpfcalls.py (calls whose errno is
the result, for workloads).
"""
import ctypes
import errno
import os
import struct

from . import perfsys
from .layout import BPF_CMDS, BPF_OTHER_CMDS
from .syscalls import addr as _addr
from .syscalls import bpf_raw

# bpf commands: enum bpf_cmd, from layout's tables (the bpf_syscall probe's too)
CMD = {name: nr for nr, name in {**BPF_CMDS, **BPF_OTHER_CMDS}.items()}
MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM = (
    CMD["MAP_LOOKUP_ELEM"], CMD["MAP_UPDATE_ELEM"], CMD["MAP_DELETE_ELEM"])
PROG_LOAD, PROG_TEST_RUN = CMD["PROG_LOAD"], CMD["PROG_TEST_RUN"]

# program types and attach types
PROG_TYPE_KPROBE = 2
PROG_TYPE_RAW_TRACEPOINT = 17
PROG_TYPE_TRACING = 26
TRACE_FENTRY = 24
TRACE_FEXIT = 25
TRACE_RAW_TP = 23      # tp_btf: a raw tracepoint with BTF-typed arguments

# mov r0, 0; exit
_RET0 = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
_GPL = ctypes.create_string_buffer(b"GPL")


class BPFError(OSError):
    """A bpf() call failed; .log holds the verifier log when there is one."""

    def __init__(self, err, what, log=""):
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.log = log


def bpf(cmd, attr: bytes, what="bpf"):
    """bpf(cmd, attr): (its result, the attr buffer after the call); BPFError on failure."""
    ret, buf = bpf_raw(cmd, attr)
    if ret < 0:
        raise BPFError(-ret, what)
    return ret, buf


def prog_load(prog_type, insns: bytes, name=b"", attach_type=0, attach_btf_id=0,
              extra_fds=()):
    """Load a program; returns its fd.  Raises BPFError with the verifier log:
    loaded without a log first (a log that overflows its buffer fails the load
    with ENOSPC), again with one only to say why it failed."""
    try:
        return _prog_load(prog_type, insns, name, attach_type, attach_btf_id, 0)
    except BPFError as e:
        try:
            fd = _prog_load(prog_type, insns, name, attach_type, attach_btf_id, 1 << 20)
        except BPFError as logged:
            if logged.errno == errno.ENOSPC:     # the log overflowed: the first error stands
                raise e
            raise
        os.close(fd)          # loads with a log: not reproducible, say the first error
        raise e


def _prog_load(prog_type, insns, name, attach_type, attach_btf_id, log_size):
    ibuf = ctypes.create_string_buffer(insns, len(insns))
    log = ctypes.create_string_buffer(max(log_size, 1))
    attr = bytearray(128)
    struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(insns) // 8, _addr(ibuf),
                     _addr(_GPL), 1 if log_size else 0, log_size, _addr(log) if log_size else 0)
    attr[48:48 + len(name[:15])] = name[:15]
    struct.pack_into("<I", attr, 68, attach_type)
    struct.pack_into("<I", attr, 108, attach_btf_id)
    ret = bpf_raw(PROG_LOAD, bytes(attr))[0]
    if ret < 0:
        raise BPFError(-ret, "BPF_PROG_LOAD", log.value.decode(errors="replace"))
    return ret


def raw_tracepoint_open(prog_fd, name: bytes = None):
    """Attach a raw_tp (name given) or a tracing (fentry/fexit) program."""
    nbuf = ctypes.create_string_buffer(name) if name else None
    ret, _ = bpf(CMD["RAW_TRACEPOINT_OPEN"], struct.pack("<QI", _addr(nbuf), prog_fd),
                 "BPF_RAW_TRACEPOINT_OPEN")
    return ret


def _trial(prog_type, attach_type=0, btf_id=0, tp_name=None):
    """Load an empty program and attach it (raw_tracepoint_open: a raw
    tracepoint by name, or the BTF target the program was loaded with).
    Returns None on success, else the reason (a string)."""
    fds = []
    try:
        fds.append(prog_load(prog_type, _RET0, b"lstrace_trial", attach_type, btf_id))
        fds.append(raw_tracepoint_open(fds[0], tp_name))
        return None
    except BPFError as e:
        return _reason(e)
    finally:
        for fd in fds:
            os.close(fd)


def trial_fentry(btf_id, fexit=False):
    """An empty fentry/fexit program on the function with this vmlinux BTF id."""
    return _trial(PROG_TYPE_TRACING, TRACE_FEXIT if fexit else TRACE_FENTRY, btf_id)


def trial_tp_btf(btf_id):
    """An empty tp_btf program on the raw tracepoint whose vmlinux BTF typedef
    (btf_trace_<event>) has this id."""
    return _trial(PROG_TYPE_TRACING, TRACE_RAW_TP, btf_id)


def trial_raw_tracepoint(name):
    return _trial(PROG_TYPE_RAW_TRACEPOINT, tp_name=name.encode())


def trial_kprobe(func, retprobe=False):
    """perf_event_open a kprobe on func through the kprobe PMU and attach an
    empty program.  Returns None on success, else the reason."""
    try:
        pmu_type = perfsys.kprobe_pmu_type()
    except OSError:
        return "kprobes not supported by this kernel (no kprobe PMU: CONFIG_KPROBES off?)"
    pfd = perfsys.kprobe_event(func, retprobe, pmu_type)
    if pfd < 0:
        return f"kprobe on {func}: {os.strerror(-pfd)}"
    try:
        pfd_prog = prog_load(PROG_TYPE_KPROBE, _RET0, b"lstrace_trial")
    except BPFError as e:
        os.close(pfd)
        return _reason(e)
    try:
        perfsys.attach_perf_event(pfd, pfd_prog, enable=False)
        return None
    except OSError as e:
        return f"attaching kprobe program: {os.strerror(e.errno)}"
    finally:
        os.close(pfd_prog)
        os.close(pfd)


def _reason(e: BPFError):
    log = e.log.strip().splitlines()
    tail = f" ({log[-1]})" if log else ""
    if e.errno == errno.EPERM:
        return f"{e.strerror} (EPERM: forbidden by this kernel's policy or lockdown){tail}"
    return f"{e.strerror}{tail}"


def map_lookup_raw(map_fd, key: bytes, value_size: int) -> bytes:
    """One BPF_MAP_LOOKUP_ELEM; for a per-CPU map pass value_size rounded up
    to 8 bytes times the number of possible CPUs."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value_size)
    bpf(MAP_LOOKUP_ELEM, struct.pack("<IIQQQ", map_fd, 0, _addr(kbuf), _addr(vbuf), 0),
        "BPF_MAP_LOOKUP_ELEM")
    return vbuf.raw


class ProgInfo:
    """The fields of struct bpf_prog_info lstrace uses."""
    __slots__ = ("id", "type", "name", "tag", "run_time_ns", "run_cnt", "recursion_misses")

    def __init__(self, raw: bytes):
        self.type, self.id = struct.unpack_from("<II", raw, 0)
        self.tag = raw[8:16].hex()
        self.name = raw[64:80].split(b"\0")[0].decode(errors="replace")
        self.run_time_ns, self.run_cnt, self.recursion_misses = struct.unpack_from("<QQQ", raw, 192)


def prog_info(fd) -> ProgInfo:
    info = ctypes.create_string_buffer(256)
    bpf(CMD["OBJ_GET_INFO_BY_FD"], struct.pack("<IIQ", fd, 256, _addr(info)),
        "BPF_OBJ_GET_INFO_BY_FD")
    return ProgInfo(info.raw)


def iter_prog_ids():
    start = 0
    while True:
        ret, buf = bpf_raw(CMD["PROG_GET_NEXT_ID"], struct.pack("<II", start, 0))
        if ret < 0:
            return
        start = struct.unpack_from("<I", buf.raw, 4)[0]
        yield start


def prog_fd_by_id(prog_id):
    return bpf(CMD["PROG_GET_FD_BY_ID"], struct.pack("<I", prog_id),
               "BPF_PROG_GET_FD_BY_ID")[0]


def iter_prog_infos(exclude_ids=()):
    """ProgInfo of every BPF program loaded now (needs CAP_SYS_ADMIN);
    programs that vanish while we walk the list are skipped."""
    for pid in iter_prog_ids():
        if pid in exclude_ids:
            continue
        try:
            fd = prog_fd_by_id(pid)
        except BPFError:
            continue
        try:
            yield prog_info(fd)
        except BPFError:
            pass
        finally:
            os.close(fd)


def enable_stats():
    """BPF_ENABLE_STATS(RUN_TIME): run_time_ns/run_cnt are counted while the
    returned fd stays open (bpftop's way: off again when lstrace exits)."""
    return bpf(CMD["ENABLE_STATS"], struct.pack("<I", 0), "BPF_ENABLE_STATS")[0]
