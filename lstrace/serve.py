"""`lstrace serve`: a Prometheus exporter (HTTP /metrics, or node_exporter textfile).

Default listen address :9477.  Prometheus' "default port allocations" wiki
list hands out 9100-9999 to exporters and that range is now fully taken;
9477 is not the port of any exporter we know of (ebpf_exporter, the
closest relative, is 9435; node_exporter 9100; process-exporter 9256), so
lstrace uses it until it is registered there.  Override with --listen.

Every scrape reads one fresh snapshot of lstrace's per-CPU maps (no background
polling); see lstrace.exporter for the metric names and the histogram rules.

Lifecycle: the listen address (or textfile directory) is checked *before*
anything is loaded, so bad input leaves nothing attached.  BCC compiles and
loads the programs in a short-lived child process (lstrace.loader) that hands
over their fds and exits: the daemon never maps libbcc or LLVM (~35 MB RSS
instead of ~200).  Then every probe the kernel allows is attached (the others are logged on stderr and exported
as lstrace_probe_attached{mode="unavailable"} 0), BPF run-time statistics are
turned on for as long as the daemon runs, and the process drops every
capability except CAP_BPF and CAP_PERFMON (plus CAP_SYS_ADMIN with
--all-programs: walking other programs' ids needs it).  SIGTERM / SIGINT
detach everything and exit 0.

HTTP: lstrace.webserve (the --web.* flags, --web.config.file: TLS, client
certificates, basic auth) and lstrace.httpserver (bounded under abuse).

Exit codes: 2 bad --listen / --probes / --interval / --web.* / web config, 73 --textfile not
writable, 75 listen address in use, 3 no probe attached, 69/77 as every
command (lstrace.errors).
"""
import ctypes
import os
import signal
import sys
import threading

import click

from . import reasons
from .errors import friendly_errors
from .options import (interval_option, latency_option, mode_option, probes_option,
                      verbose_option)
from .errors import EXIT_CANTCREAT, LstraceError, UsageError
from .webserve import (DEFAULT_LISTEN, bind_server, check_web_flags, parse_listen,
                       web_options)

CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 2, 21, 38, 39


def check_textfile(path):
    """Fail now (exit 73) if `path` cannot be written atomically (temp file + rename)."""
    d = os.path.dirname(os.path.abspath(path)) or "."
    probe = os.path.join(d, f".{os.path.basename(path)}.lstrace-check.{os.getpid()}")
    if os.path.isdir(path):
        raise LstraceError(f"cannot write --textfile {path}: it is a directory", EXIT_CANTCREAT)
    try:
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise LstraceError(f"cannot write --textfile {path}: {e.strerror} ({d})",
                           EXIT_CANTCREAT)


# ---- capabilities (capset(2) via ctypes: the daemon keeps only what reads need)
class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4


def drop_capabilities(keep):
    """Keep only the capabilities in `keep` (effective+permitted), empty the
    inheritable, ambient and bounding sets, set no_new_privs.  Returns the
    kept mask, or raises OSError."""
    libc = ctypes.CDLL(None, use_errno=True)
    mask = 0
    for c in keep:
        mask |= 1 << c
    # bounding set first (needs CAP_SETPCAP, which we still hold)
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for c in range(last + 1):
        if not mask & (1 << c):
            libc.prctl(PR_CAPBSET_DROP, c, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    hdr = _CapHeader(_CAP_V3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
        data[i].inheritable = 0
    if libc.capset(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
    return mask


def _log(msg):
    click.echo(f"lstrace: {msg}", err=True)


@click.command()
@click.option("--listen", default=None, metavar="HOST:PORT",
              help=f"Serve /metrics here (default {DEFAULT_LISTEN}).")
@probes_option
@click.option("--textfile", default=None, metavar="PATH",
              help="Write node_exporter textfile format to PATH (atomically) every --interval "
                   "seconds instead of serving HTTP (both with an explicit --listen).")
@interval_option(15.0, help="Seconds between --textfile writes.")
@click.option("--once", is_flag=True, help="Print one exposition on stdout and exit.")
@mode_option
@click.option("--all-programs", is_flag=True,
              help="Also export run counts of every BPF program on the host (by name).")
@latency_option
@click.option("--per-cpu-latency", is_flag=True,
              help="With --latency: histograms per CPU too (43 series per probe and CPU; "
                   "default: per probe).")
@verbose_option
@web_options
@friendly_errors
def serve(listen, probe_list, textfile, interval, once, mode, all_programs, latency,
          per_cpu_latency, verbose, listen_address, telemetry_path, web_config_file,
          max_requests, check_config):
    """Prometheus exporter: per-CPU helper failures, rqspinlock failures, bpf() errors."""
    from .exposition import MetricsApp
    from .plan import parse_probe_list
    from .session import Session

    # 1. every input check before anything is loaded into the kernel
    names = parse_probe_list(probe_list)
    _check_flags(interval, latency, per_cpu_latency, textfile)
    listen, web_config = check_web_flags(listen, listen_address, telemetry_path, max_requests,
                                         web_config_file, check_config)
    if check_config:
        _log(f"web config {web_config.path}: valid ({web_config.summary})")
        return
    host, port = parse_listen(listen or DEFAULT_LISTEN)
    if textfile:
        check_textfile(textfile)
    app = MetricsApp()       # HTTP: lstrace's fast writer (textfile, --once: prometheus_client)
    serve_http = not once and (textfile is None or listen is not None)
    httpd = bind_server(host, port, app, web_config, telemetry_path, max_requests,
                        _log) if serve_http else None
    # 2. load and attach, drop privileges, then serve until a signal
    stop = threading.Event()
    session = Session(probes=names, mode=mode, bpf_stats=True, latency=latency)
    serving = False
    try:
        _on_signals(stop, httpd)
        session.start()
        _log_attached(session, verbose)
        _drop_to_readers(all_programs)
        registry = _registry(session, app, all_programs, per_cpu_latency)
        if once:
            _print_once(registry)
            return
        if httpd is not None:
            serving = _start_http(httpd)
            _log_serving(host, port, telemetry_path, web_config)
        _wait(stop, registry, textfile, interval)
    finally:
        if httpd is not None:
            if serving:
                httpd.shutdown()
            httpd.server_close()
        session.stop()


def _check_flags(interval, latency, per_cpu_latency, textfile):
    """The flags serve alone checks (UsageError, exit 2)."""
    if not 0 < interval < float("inf"):       # also refuses nan
        raise UsageError(f"bad --interval {interval}: must be a finite number of seconds > 0")
    if per_cpu_latency and not latency:
        raise UsageError("--per-cpu-latency needs --latency (latency histograms are opt-in)")
    if textfile is not None and not textfile.strip():
        raise UsageError("bad --textfile '': name the file to write")


def _on_signals(stop, httpd):
    """SIGTERM / SIGINT only set `stop` (the caller's finally always detaches);
    SIGHUP re-reads the web config, as Prometheus does."""
    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if httpd is not None and httpd.reloader is not None:
        signal.signal(signal.SIGHUP, lambda *_: httpd.reloader.force())


def _log_attached(session, verbose):
    """What attached and what did not (grouped by reason unless --verbose)."""
    missing = [(s.name, s.kind, s.reason) for s in session.statuses() if not s.attached]
    for line in ([f"probe {n} not attached: {r}" for n, _, r in missing] if verbose
                 else reasons.summary_lines(reasons.group_unavailable(missing))):
        _log(line)
    attached = [f"{s.name} ({s.mode})" for s in session.statuses() if s.attached]
    _log("attached " + ", ".join(attached))
    if not session.stats_enabled:
        _log("BPF run-time statistics unavailable: program run counts stay 0")


def _drop_to_readers(all_programs):
    """Keep only the capabilities reading the maps needs."""
    keep = [CAP_BPF, CAP_PERFMON] + ([CAP_SYS_ADMIN] if all_programs else [])
    try:
        drop_capabilities(keep)
    except OSError as e:
        _log(f"could not drop capabilities ({e}); continuing with the current set")


def _registry(session, app, all_programs, per_cpu_latency):
    """A registry whose one collector reads a fresh snapshot per scrape; the
    HTTP app renders the same collector."""
    from prometheus_client import CollectorRegistry

    from .exporter import SnapshotCollector
    registry = CollectorRegistry(auto_describe=False)
    collector = SnapshotCollector(session.snapshot, all_programs=all_programs,
                                  per_cpu_latency=per_cpu_latency)
    registry.register(collector)
    app.body = collector.render
    return registry


def _print_once(registry):
    from prometheus_client import generate_latest
    sys.stdout.write(generate_latest(registry).decode())
    sys.stdout.flush()


def _start_http(httpd):
    """Serve in a thread; True once it runs."""
    # the HTTP thread and the request threads it starts inherit SIGINT and
    # SIGTERM blocked, so the kernel delivers them to the main thread: one
    # delivered to a request thread only set Python's flag while the main
    # thread slept on in stop.wait() (seen: 1 in ~10 SIGINTs under scrapes)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return True


def _log_serving(host, port, telemetry_path, web_config):
    scheme = "https" if web_config and web_config.context else "http"
    _log(f"serving {scheme}://{host if ':' not in host else '[' + host + ']'}:{port}"
         f"{telemetry_path}" + (f" ({web_config.summary})" if web_config else ""))


def _wait(stop, registry, textfile, interval):
    """Until a signal: write --textfile every --interval (HTTP serves itself)."""
    from prometheus_client import write_to_textfile
    if textfile:
        _log(f"writing {textfile} every {interval:g}s")
    while not stop.is_set():
        if textfile:
            try:
                write_to_textfile(textfile, registry)
            except OSError as e:
                raise LstraceError(f"cannot write --textfile {textfile}: {e.strerror}",
                                   EXIT_CANTCREAT)
            stop.wait(interval)
        else:
            stop.wait(3600)
    _log("signal received: detaching")
