"""The HTTP(S) server of `lstrace serve`, bounded under abuse.

One thread (selectors) accepts connections, does their TLS handshakes and
reads their request headers, all non-blocking: a connection that has not
finished its headers costs a socket and a buffer, not a thread.  Each has
HEADER_TIMEOUT seconds from accept to finish them; at most `max_conns` wait
at once (the oldest is closed to make room, so a real scraper always gets in
however many half-open connections an attacker keeps).  A complete request
goes to a pool of at most `max_requests` threads (node_exporter's
--web.max-requests; 0: no limit); past it the answer is 503, as promhttp's.
A response must be written within WRITE_TIMEOUT in all (a client reading
a byte at a time cannot keep a worker); every connection is closed after
one response (HTTP/1.0, as the wsgiref server before it).
"""
import collections
import os
import selectors
import socket
import ssl
import threading
import time

from .tlsauth import san_allowed
from .webrequest import Handler
from .workers import Workers

HEADER_TIMEOUT = 10.0        # seconds from accept to the end of the request headers
WRITE_TIMEOUT = 10.0         # seconds to write one response, in all
MAX_HEADER_BYTES = 64 * 1024
MAX_CONNS = 512              # connections waiting for their headers, at most
ACCEPT_BATCH = 64
BACKLOG = 1024               # SYNs beyond it are dropped and retried by the client 1 s later
_BUSY_BODY = b"lstrace: too many scrapes in flight (see --web.max-requests)\n"
BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))
TOO_LARGE = b"HTTP/1.0 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n"
HTTP_TO_HTTPS = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"


def conn_limit(max_requests, wanted=MAX_CONNS):
    """At most `wanted` waiting connections, fewer when RLIMIT_NOFILE is low
    (the in-flight requests and the process' own fds need room too)."""
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    used = len(os.listdir("/proc/self/fd"))
    return max(8, min(wanted, soft - used - (max_requests or wanted) - 32))


class _Conn:
    __slots__ = ("sock", "addr", "buf", "deadline", "config", "handshaking")

    def __init__(self, sock, addr, config):
        self.sock, self.addr, self.config = sock, addr, config
        self.buf = b""
        self.deadline = time.monotonic() + HEADER_TIMEOUT
        self.handshaking = config.context is not None if config else False


class BoundedServer:
    def __init__(self, sock, app, configs, telemetry_path="/metrics", max_requests=40,
                 max_conns=None, header_timeout=HEADER_TIMEOUT, write_timeout=WRITE_TIMEOUT):
        """`sock`: a bound socket; `app`: the WSGI app of the metrics;
        `configs()`: the web config for a new connection (None: refuse it)."""
        self.socket, self.app, self.configs = sock, app, configs
        sock.listen(BACKLOG)          # now, as socketserver does: early scrapers wait
        self.telemetry_path, self.max_requests = telemetry_path, max_requests
        self.max_conns = max_conns or conn_limit(max_requests)
        self.header_timeout, self.write_timeout = header_timeout, write_timeout
        self.auth = None                     # webauth.BasicAuth, made when first needed
        self.auth_lock = threading.Lock()
        self._conns = collections.OrderedDict()      # fd -> _Conn, oldest first
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._pool = Workers(max_requests, self._handle)
        self.counts = collections.Counter()  # what happened to connections (tests, logs)

    @property
    def threads(self):
        """Request threads alive now (at most max_requests)."""
        return self._pool.threads

    @property
    def pending(self):
        """Requests handed to the workers and not finished (their answers may
        still be going out)."""
        return self._pool.pending

    # ---- lifecycle (socketserver's names: serve.py calls these)
    def serve_forever(self):
        self.socket.setblocking(False)
        self._sel.register(self.socket, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            for fd in list(self._conns):
                self._close(fd)
            self._done.set()

    def shutdown(self):
        self._stop.set()
        self._wake_w.send(b"x")
        self._done.wait(10)
        self._pool.stop()

    def server_close(self):
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()
        self._sel.close()

    # ---- the selector thread
    def _step(self):
        now = time.monotonic()
        first = next(iter(self._conns.values()), None)
        timeout = None if first is None else max(0.0, first.deadline - now)
        for key, _ in self._sel.select(timeout):
            try:
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._wake_r.recv(64)
                elif key.fd in self._conns:
                    self._advance(key.fd)
            except Exception as e:      # noqa: BLE001 - one connection's bug, not the server's
                self.counts[f"internal error: {type(e).__name__}"] += 1
                self._close(key.fd)
        now = time.monotonic()
        while self._conns:
            fd, conn = next(iter(self._conns.items()))
            if conn.deadline > now:
                break
            self.counts["timed out"] += 1
            self._close(fd)

    def _accept(self):
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:          # EMFILE, ENFILE, ENOBUFS: make room, retry next time
                if self._conns:
                    self.counts["evicted"] += 1
                    self._close(next(iter(self._conns)))
                else:
                    time.sleep(0.01)
                return
            while len(self._conns) >= self.max_conns:
                self.counts["evicted"] += 1
                self._close(next(iter(self._conns)))
            self._admit(sock, addr)

    def _admit(self, sock, addr):
        config = self.configs()
        if config is None:
            self.counts["refused (bad config)"] += 1
            sock.close()
            return
        sock.setblocking(False)
        if config.context is not None:
            try:
                sock = config.context.wrap_socket(sock, server_side=True,
                                                  do_handshake_on_connect=False)
            except (OSError, ValueError):
                sock.close()
                return
        conn = _Conn(sock, addr, config)
        conn.deadline = time.monotonic() + self.header_timeout
        self._conns[sock.fileno()] = conn
        self._sel.register(sock, selectors.EVENT_READ, None)

    def _advance(self, fd):
        conn = self._conns[fd]
        try:
            if conn.handshaking:
                conn.sock.do_handshake()
                conn.handshaking = False
                if conn.config.allowed_sans and not san_allowed(conn.sock.getpeercert(),
                                                                conn.config.allowed_sans):
                    self.counts["client SAN not allowed"] += 1
                    self._close(fd)
                    return
                self._sel.modify(conn.sock, selectors.EVENT_READ, None)
            self._read(fd, conn)
        except ssl.SSLWantReadError:
            self._sel.modify(conn.sock, selectors.EVENT_READ, None)
        except ssl.SSLWantWriteError:
            self._sel.modify(conn.sock, selectors.EVENT_WRITE, None)
        except (BlockingIOError, InterruptedError):
            pass
        except ssl.SSLError as e:
            self.counts["TLS handshake failed"] += 1
            if e.reason == "HTTP_REQUEST":           # plain HTTP to the TLS port
                _raw_send(conn.sock, HTTP_TO_HTTPS)
            self._close(fd)
        except (OSError, ValueError):
            self._close(fd)

    def _read(self, fd, conn):
        while True:
            data = conn.sock.recv(16384)     # raises BlockingIOError / SSLWantReadError
            if not data:
                self._close(fd)
                return
            conn.buf += data
            if b"\r\n\r\n" in conn.buf or b"\n\n" in conn.buf:
                self._dispatch(fd, conn)
                return
            if len(conn.buf) > MAX_HEADER_BYTES:
                _nonblocking_send(conn.sock, TOO_LARGE)
                self._close(fd)
                return

    def _dispatch(self, fd, conn):
        self._sel.unregister(conn.sock)
        del self._conns[fd]
        if self._pool.submit(conn):
            self.counts["handed to a worker"] += 1
            return
        self.counts["503 (max requests)"] += 1
        _nonblocking_send(conn.sock, BUSY)
        _shut(conn.sock)

    def _close(self, fd):
        conn = self._conns.pop(fd, None)
        if conn is not None:
            try:
                self._sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            _shut(conn.sock)

    # ---- a worker thread
    def _handle(self, conn, release):
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(self.write_timeout)
            Handler(conn, self, release)
        except Exception as e:          # noqa: BLE001 - the worker thread must go on
            if not isinstance(e, (OSError, ValueError)):
                self.counts[f"internal error: {type(e).__name__}"] += 1
        finally:
            _shut(conn.sock)


def _nonblocking_send(sock, data):
    try:
        sock.send(data)
    except (OSError, ValueError):
        pass


def _raw_send(sock, data):
    """Write on the TCP socket under a failed TLS handshake (no TLS record)."""
    try:
        os.write(sock.fileno(), data)
    except OSError:
        pass


def _shut(sock):
    try:
        sock.close()
    except OSError:
        pass
