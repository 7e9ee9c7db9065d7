"""Attach loaded BPF programs with bpf() and perf_event_open() alone.

The long-running process holds program fds the loader child handed over
(lstrace.loader) and attaches them here, without BCC.  Every attachment is
one fd owned by this process; detaching is closing it, and so is dying:

  kfunc / kretfunc     BPF_RAW_TRACEPOINT_OPEN with no name (a tracing link,
                       what BCC's bpf_attach_kfunc does)
  raw_tp               BPF_RAW_TRACEPOINT_OPEN(name)
  kprobe / kretprobe   perf_event_open on the kprobe PMU
                       (/sys/bus/event_source/devices/kprobe) + PERF_EVENT_IOC_SET_BPF:
                       nothing is written to tracefs kprobe_events, so nothing
                       outlives a SIGKILL (BCC goes through kprobe_events when
                       asked for a kretprobe maxactive; the PMU takes the kernel's
                       default, max(10, 2 * possible CPUs) on preemptible kernels)
  tracepoint           perf_event_open(PERF_TYPE_TRACEPOINT, id from tracefs)
                       + PERF_EVENT_IOC_SET_BPF
"""
import os

from . import bpfsys, perfsys
from .kernel import tracefs_root

PROG_TYPE_TRACEPOINT = 5
# the program type each attach kind needs at load time (BCC: BPF.TRACING,
# BPF.KPROBE, BPF.RAW_TRACEPOINT, BPF.TRACEPOINT, as its attach_* load them)
PROG_TYPE = {"kfunc": bpfsys.PROG_TYPE_TRACING, "kretfunc": bpfsys.PROG_TYPE_TRACING,
             "kprobe": bpfsys.PROG_TYPE_KPROBE, "kretprobe": bpfsys.PROG_TYPE_KPROBE,
             "raw_tp": bpfsys.PROG_TYPE_RAW_TRACEPOINT, "tracepoint": PROG_TYPE_TRACEPOINT,
             "tp_btf": bpfsys.PROG_TYPE_TRACING}


class AttachError(Exception):
    """One attach point refused; the message says which and why."""


def tracepoint_id(event):
    """The perf id of tracepoint 'category:name' (tracefs events/<cat>/<name>/id)."""
    cat, _, name = event.partition(":")
    root = tracefs_root()
    if root is None:
        raise AttachError(f"tracepoint {event}: tracefs not mounted and cannot be mounted")
    try:
        with open(f"{root}/events/{cat}/{name}/id") as f:
            return int(f.read())
    except (OSError, ValueError) as e:
        raise AttachError(f"tracepoint {event}: {getattr(e, 'strerror', None) or e}")


def _perf_attach(pfd, prog_fd, what):
    if pfd < 0:
        raise AttachError(f"{what}: perf_event_open: {os.strerror(-pfd)}")
    try:
        perfsys.attach_perf_event(pfd, prog_fd)
    except OSError as e:
        os.close(pfd)
        raise AttachError(f"{what}: attaching the program: {os.strerror(e.errno)}")
    return pfd


def attach(kind, event, prog_fd):
    """Attach program `prog_fd` (loaded with PROG_TYPE[kind]) to `event`;
    returns the fd that holds the attachment (detach: close it)."""
    try:
        if kind in ("kfunc", "kretfunc", "tp_btf"):     # the target is in the program
            return bpfsys.raw_tracepoint_open(prog_fd)
        if kind == "raw_tp":
            return bpfsys.raw_tracepoint_open(prog_fd, event.encode())
    except bpfsys.BPFError as e:
        raise AttachError(f"{kind} {event}: {e.strerror}")
    if kind in ("kprobe", "kretprobe"):
        try:
            pmu = perfsys.kprobe_pmu_type()
        except OSError:
            raise AttachError("kprobes not supported by this kernel (no kprobe PMU)")
        return _perf_attach(perfsys.kprobe_event(event, kind == "kretprobe", pmu), prog_fd,
                            f"{kind} {event}")
    if kind == "tracepoint":
        return _perf_attach(perfsys.tracepoint_event(tracepoint_id(event)), prog_fd,
                            f"tracepoint {event}")
    raise AttachError(f"unknown attach kind {kind!r}")


def detach(fd):
    os.close(fd)
