"""perf_event_open(2) for BPF programs: kprobe events through the kprobe PMU
(nothing written to tracefs kprobe_events), tracepoint events, and running a
program on one (PERF_EVENT_IOC_SET_BPF), as BCC does."""
import ctypes
import struct

from .syscalls import SYS_PERF_EVENT_OPEN, addr, syscall

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
    return syscall(SYS_PERF_EVENT_OPEN, abuf, ctypes.c_int(-1), ctypes.c_int(0),
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
    struct.pack_into("<QQ", attr, 56, addr(fname), 0)  # config1 = func name, config2 = offset
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
