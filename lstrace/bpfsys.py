"""Thin ctypes wrappers around bpf(2) and perf_event_open(2).

BCC compiles and attaches lstrace's programs; this module covers what BCC's
Python API lacks: trial attaches of a two-instruction program to one exact
kernel function (libbpf-tools' fentry_can_attach idea), whole-value reads of
per-CPU maps in one syscall, program statistics and BPF_ENABLE_STATS.
"""
import ctypes
import errno
import os
import struct

from . import arch
from .errors import Unavailable

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# syscall numbers from lstrace/arch.py; None on an architecture it lacks (every
# call then raises Unavailable: never another architecture's number)
_ARCH = arch.lookup()
SYS_BPF = _ARCH.nr_bpf if _ARCH else None
SYS_PERF_EVENT_OPEN = _ARCH.nr_perf_event_open if _ARCH else None
SYS_PIDFD_OPEN = _ARCH.nr_pidfd_open if _ARCH else None

# bpf commands
MAP_LOOKUP_ELEM = 1
PROG_LOAD = 5
PROG_GET_NEXT_ID = 11
PROG_GET_FD_BY_ID = 13
OBJ_GET_INFO_BY_FD = 15
RAW_TRACEPOINT_OPEN = 17
ENABLE_STATS = 32

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


def _sys(nr, *args):
    if nr is None:
        raise Unavailable(arch.unsupported_message(arch.machine()))
    ret = _libc.syscall(nr, *args)
    if ret < 0:
        return -ctypes.get_errno()
    return ret


def bpf(cmd, attr: bytes, what="bpf"):
    buf = ctypes.create_string_buffer(attr, max(len(attr), 128))
    ret = _sys(SYS_BPF, ctypes.c_long(cmd), buf, ctypes.c_uint(len(buf)))
    if ret < 0:
        raise BPFError(-ret, what)
    return ret, buf


def _addr(buf):
    return ctypes.addressof(buf) if buf is not None else 0


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
    buf = ctypes.create_string_buffer(bytes(attr), 128)
    ret = _sys(SYS_BPF, ctypes.c_long(PROG_LOAD), buf, ctypes.c_uint(128))
    if ret < 0:
        raise BPFError(-ret, "BPF_PROG_LOAD", log.value.decode(errors="replace"))
    return ret


def raw_tracepoint_open(prog_fd, name: bytes = None):
    """Attach a raw_tp (name given) or a tracing (fentry/fexit) program."""
    nbuf = ctypes.create_string_buffer(name) if name else None
    ret, _ = bpf(RAW_TRACEPOINT_OPEN, struct.pack("<QI", _addr(nbuf), prog_fd),
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


KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"
PERF_TYPE_TRACEPOINT = 2
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408


def kprobe_pmu_type():
    """The kprobe PMU's perf type (OSError when the kernel has no kprobes)."""
    with open(f"{KPROBE_PMU}/type") as f:
        return int(f.read())


def perf_event_open(attr: bytearray) -> int:
    """perf_event_open(attr, pid -1, cpu 0) as BCC does for kprobes and
    tracepoints (the attached program runs on every CPU); -errno on failure."""
    abuf = ctypes.create_string_buffer(bytes(attr), 128)
    return _sys(SYS_PERF_EVENT_OPEN, abuf, ctypes.c_int(-1), ctypes.c_int(0),
                ctypes.c_int(-1), ctypes.c_ulong(8))  # PERF_FLAG_FD_CLOEXEC


def kprobe_event(func, retprobe=False, pmu_type=None) -> int:
    """A kprobe (or kretprobe) perf event on func through the kprobe PMU:
    its fd, or -errno."""
    pmu_type = kprobe_pmu_type() if pmu_type is None else pmu_type
    bit = 0
    if retprobe:
        with open(f"{KPROBE_PMU}/format/retprobe") as f:   # "config:0"
            bit = int(f.read().split(":")[1])
    fname = ctypes.create_string_buffer(func.encode())
    attr = bytearray(128)
    # type, size, config, sample_period, sample_type, read_format, flags
    struct.pack_into("<IIQQQQQ", attr, 0, pmu_type, 128, (1 << bit) if retprobe else 0,
                     0, 0, 0, 0)
    struct.pack_into("<QQ", attr, 56, _addr(fname), 0)  # config1 = func name, config2 = offset
    return perf_event_open(attr)


def tracepoint_event(tp_id) -> int:
    """A perf event on tracepoint tp_id (tracefs events/<cat>/<name>/id): fd or -errno."""
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, PERF_TYPE_TRACEPOINT, 128, tp_id, 1)  # period 1
    return perf_event_open(attr)


def attach_perf_event(pfd, prog_fd, enable=True):
    """Run prog_fd on the perf event pfd (OSError when refused)."""
    import fcntl
    fcntl.ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog_fd)
    if enable:
        fcntl.ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0)


def trial_kprobe(func, retprobe=False):
    """perf_event_open a kprobe on func through the kprobe PMU and attach an
    empty program.  Returns None on success, else the reason."""
    try:
        pmu_type = kprobe_pmu_type()
    except OSError:
        return "kprobes not supported by this kernel (no kprobe PMU: CONFIG_KPROBES off?)"
    pfd = kprobe_event(func, retprobe, pmu_type)
    if pfd < 0:
        return f"kprobe on {func}: {os.strerror(-pfd)}"
    try:
        pfd_prog = prog_load(PROG_TYPE_KPROBE, _RET0, b"lstrace_trial")
    except BPFError as e:
        os.close(pfd)
        return _reason(e)
    try:
        attach_perf_event(pfd, pfd_prog, enable=False)
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
    bpf(OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, 256, _addr(info)), "BPF_OBJ_GET_INFO_BY_FD")
    return ProgInfo(info.raw)


def iter_prog_ids():
    start = 0
    while True:
        buf = ctypes.create_string_buffer(struct.pack("<II", start, 0), 128)
        ret = _sys(SYS_BPF, ctypes.c_long(PROG_GET_NEXT_ID), buf, ctypes.c_uint(128))
        if ret < 0:
            return
        start = struct.unpack_from("<I", buf.raw, 4)[0]
        yield start


def prog_fd_by_id(prog_id):
    return bpf(PROG_GET_FD_BY_ID, struct.pack("<I", prog_id), "BPF_PROG_GET_FD_BY_ID")[0]


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
    return bpf(ENABLE_STATS, struct.pack("<I", 0), "BPF_ENABLE_STATS")[0]


# ---- calls whose errno is the result (lstrace repro's workloads count them) ----
# These never raise on a failed syscall: they return -errno, so a caller can
# count every outcome exactly.  ctypes drops the GIL around the syscall, so
# threads pinned to different CPUs really run them at the same time.

MAP_UPDATE_ELEM = 2
MAP_DELETE_ELEM = 3
PROG_TEST_RUN = 10
ANY, NOEXIST, EXIST = 0, 1, 2          # BPF_ANY / BPF_NOEXIST / BPF_EXIST
F_TEST_RUN_ON_CPU = 1 << 0             # BPF_F_TEST_RUN_ON_CPU


def _elem(cmd, map_fd, key: bytes, value, flags=0):
    kbuf = ctypes.create_string_buffer(key, len(key))
    attr = struct.pack("<IIQQQ", map_fd, 0, _addr(kbuf), _addr(value), flags)  # delete: value 0
    buf = ctypes.create_string_buffer(attr, 128)
    return _sys(SYS_BPF, ctypes.c_long(cmd), buf, ctypes.c_uint(128))


def map_update_elem(map_fd, key: bytes, value: bytes, flags=ANY) -> int:
    """BPF_MAP_UPDATE_ELEM: 0 or -errno."""
    return _elem(MAP_UPDATE_ELEM, map_fd, key, ctypes.create_string_buffer(value, len(value)),
                 flags)


def map_delete_elem(map_fd, key: bytes) -> int:
    """BPF_MAP_DELETE_ELEM: 0 or -errno."""
    return _elem(MAP_DELETE_ELEM, map_fd, key, None)


def map_lookup_elem(map_fd, key: bytes, value_size: int):
    """BPF_MAP_LOOKUP_ELEM: (0 or -errno, value bytes).  For a per-CPU map
    pass value_size rounded up to 8 bytes times the number of possible CPUs."""
    vbuf = ctypes.create_string_buffer(value_size)
    return _elem(MAP_LOOKUP_ELEM, map_fd, key, vbuf), vbuf.raw


def prog_test_run(prog_fd, data: bytes = b"", ctx: bytes = b"", repeat=0, cpu=None):
    """BPF_PROG_TEST_RUN: (0 or -errno, the program's retval as a signed int).

    repeat: 0 means once (raw_tp refuses anything else).
    cpu: pass BPF_F_TEST_RUN_ON_CPU (raw_tp only); other program types run on
    the calling thread's CPU, so their callers pin the thread instead."""
    dbuf = ctypes.create_string_buffer(data, max(len(data), 1))
    cbuf = ctypes.create_string_buffer(ctx, max(len(ctx), 1))
    flags = F_TEST_RUN_ON_CPU if cpu is not None else 0
    # prog_fd, retval, data_size_in/out, data_in/out, repeat, duration,
    # ctx_size_in/out, ctx_in/out, flags, cpu, batch_size
    attr = struct.pack("<IIIIQQIIIIQQIII", prog_fd, 0, len(data), 0,
                       _addr(dbuf) if data else 0, 0, repeat, 0,
                       len(ctx), 0, _addr(cbuf) if ctx else 0, 0, flags, cpu or 0, 0)
    buf = ctypes.create_string_buffer(attr, 128)
    ret = _sys(SYS_BPF, ctypes.c_long(PROG_TEST_RUN), buf, ctypes.c_uint(128))
    if ret < 0:
        return ret, 0
    return 0, struct.unpack_from("<i", buf.raw, 4)[0]


def pidfd_open(pid: int) -> int:
    """A pidfd (the key of task-storage maps from bpf()); OSError on failure."""
    ret = _sys(SYS_PIDFD_OPEN, ctypes.c_int(pid), ctypes.c_uint(0))
    if ret < 0:
        raise OSError(-ret, f"pidfd_open: {os.strerror(-ret)}")
    return ret
