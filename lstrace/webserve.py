"""The HTTP side of `lstrace serve`: node_exporter's --web.* flags, the
listen address, and the bounded server (lstrace.httpserver) bound before any
BPF is loaded, so a taken port or a bad web config leaves nothing attached."""
import errno
import os
import socket

import click

from . import webconfig
from .errors import EXIT_PORT, LstraceError, UsageError

DEFAULT_PORT = 9477
DEFAULT_LISTEN = f":{DEFAULT_PORT}"
DEFAULT_MAX_REQUESTS = 40        # node_exporter's default


def web_options(fn):
    """The --web.* flags (node_exporter's names and meanings) and --check-config."""
    for opt in reversed([
        click.option("--web.listen-address", "listen_address", default=None,
                     metavar="HOST:PORT", help="node_exporter's name of --listen."),
        click.option("--web.telemetry-path", "telemetry_path", default="/metrics",
                     show_default=True, metavar="PATH", help="Path of the metrics."),
        click.option("--web.config.file", "web_config_file", default=None, metavar="PATH",
                     help="Prometheus exporter-toolkit web config: TLS, client "
                          "certificates, basic auth, headers (reloaded when it changes)."),
        click.option("--web.max-requests", "max_requests", type=int,
                     default=DEFAULT_MAX_REQUESTS, show_default=True, metavar="N",
                     help="Scrapes in flight at most; more are answered 503 (0: no limit)."),
        click.option("--check-config", is_flag=True,
                     help="Validate --web.config.file and exit (0 valid, 2 not); loads "
                          "nothing."),
    ]):
        fn = opt(fn)
    return fn


def parse_listen(text):
    """'HOST:PORT', ':PORT' or '[v6]:PORT' -> (host, port); anything else is a usage error."""
    text = (text or "").strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"bad --listen {text!r}: expected HOST:PORT, :PORT or [IPv6]:PORT "
                         f"with a port 1-65535 (default {DEFAULT_LISTEN})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"bad --listen {text!r}: write IPv6 addresses in brackets, [::1]:PORT")
    return host or "0.0.0.0", int(port)


def check_web_flags(listen, listen_address, telemetry_path, max_requests, web_config_file,
                    check_config):
    """Every --web.* check: returns (listen text or None, WebConfig or None)."""
    if listen and listen_address and listen.strip() != listen_address.strip():
        raise UsageError(f"--listen {listen} and --web.listen-address {listen_address} "
                         "disagree: give one of them")
    if not telemetry_path.startswith("/") or telemetry_path == "/":
        raise UsageError(f"bad --web.telemetry-path {telemetry_path!r}: a path below /, "
                         "such as /metrics")
    if max_requests < 0:
        raise UsageError(f"bad --web.max-requests {max_requests}: 0 (no limit) or more")
    if check_config and not web_config_file:
        raise UsageError("--check-config checks --web.config.file: name the file")
    config = None
    if web_config_file is not None:
        config = webconfig.load(web_config_file)
    return listen or listen_address, config


def bind_server(host, port, app, config=None, telemetry_path="/metrics",
                max_requests=DEFAULT_MAX_REQUESTS, log=None):
    """Bind the server now (serving starts later): a taken port or an address
    that does not resolve is reported before any BPF is loaded."""
    from .httpserver import BoundedServer
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"bad --listen {host}:{port}: {e.strerror}")
    sock = socket.socket(infos[0][0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise LstraceError(f"cannot listen on {host}:{port}: address already in use "
                               f"(another exporter? pick one with --listen)", EXIT_PORT)
        if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            raise UsageError(f"bad --listen {host}:{port}: {e.strerror}")
        if e.errno == errno.EACCES:
            raise LstraceError(f"cannot listen on {host}:{port}: {e.strerror}", EXIT_PORT)
        raise
    reloader = Reloader(config, log or (lambda _msg: None)) if config is not None else None
    server = BoundedServer(sock, app, reloader.get if reloader else _no_config,
                           telemetry_path=telemetry_path, max_requests=max_requests)
    server.reloader = reloader
    return server


class _Plain:
    """The configuration without --web.config.file: plain HTTP, no auth."""
    context, users, headers = None, {}, ()


def _no_config():
    return _Plain


class Reloader:
    """The configuration for each new connection, as the toolkit reloads it:
    read again when one of its files changed (stat: a Kubernetes Secret
    update swaps a symlink, a `cp` changes size or mtime).  A file that became
    invalid is logged once and refuses connections until it is fixed (the
    toolkit fails those handshakes and requests too); switching between HTTP
    and HTTPS needs a restart, as with the toolkit."""

    def __init__(self, config, log):
        self.config, self._log, self._error = config, log, None
        self._sig = _signature(config.files)

    def force(self):
        """Re-read at the next connection even if no file seems changed (SIGHUP)."""
        self._sig = None

    def get(self):
        """The current WebConfig, or None while the file is invalid."""
        sig = _signature(self.config.files)
        if sig != self._sig:
            self._sig = sig
            try:
                new = webconfig.load(self.config.path)
                if (new.context is None) != (self.config.context is None):
                    raise UsageError(f"--web.config.file {self.config.path}: tls_server_config "
                                     "added or removed: restart lstrace serve to switch "
                                     "between HTTP and HTTPS")
            except Exception as e:      # noqa: BLE001 - UsageError, or a file gone meanwhile
                self._error = str(e) if isinstance(e, UsageError) else \
                    f"web config {self.config.path}: {type(e).__name__}: {e}"
                self._log(f"{self._error}; refusing connections until it is fixed")
            else:
                self.config, self._error = new, None
                self._sig = _signature(new.files)
                self._log(f"web config {new.path} reloaded: {new.summary}")
        return None if self._error else self.config


def _signature(files):
    out = []
    for name in files:
        try:
            st = os.stat(name)
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except OSError:
            out.append(None)
    return tuple(out)
