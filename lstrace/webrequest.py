"""One HTTP request of `lstrace serve` (http.server parses it): basic auth and
the extra headers of the web config, then the metrics on the telemetry path,
a landing page on /, 404 elsewhere (node_exporter's layout)."""
import html
import io
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from . import __version__

LANDING = """<html><head><title>lstrace</title></head><body><h1>lstrace</h1>
<p>Live per-CPU health of BPF local storage and rqspinlocks.</p>
<p><a href="{path}">Metrics</a></p></body></html>
"""


class Handler(BaseHTTPRequestHandler):
    """Built on a connection whose request headers the server already read
    (conn.buf); answers that request and returns (the server closes)."""
    server_version = f"lstrace/{__version__}"
    protocol_version = "HTTP/1.0"
    sys_version = ""

    def __init__(self, conn, server, release=lambda: None):
        self.conn_config = conn.config
        self.buffered = conn.buf
        self.release = release       # frees the request's slot (lstrace.workers)
        super().__init__(conn.sock, conn.addr, server)

    def setup(self):
        self.connection = self.request
        self.rfile = io.BytesIO(self.buffered)
        self.wfile = _DeadlineWriter(self.request, self.server.write_timeout)

    def finish(self):
        """Nothing buffered: each write went out (or raised) already."""

    def log_message(self, *args):
        """Silent, as prometheus_client's handler (scrapes are not logged)."""

    def _answer(self, code, body, headers=()):
        self.send_response(code)
        for name, value in (*headers, *self.conn_config.headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.release()           # nothing sent yet: the client cannot be done before this
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self):
        users = self.conn_config.users
        if not users:
            return True
        with self.server.auth_lock:
            if self.server.auth is None:
                from .webauth import BasicAuth
                self.server.auth = BasicAuth()
        return self.server.auth.check(users, self.headers.get("Authorization"))

    def _dispatch(self):
        if not self._authorized():
            self._answer(401, b"Unauthorized\n", [("Content-Type", "text/plain; charset=utf-8"),
                                                  ("WWW-Authenticate", "Basic")])
            return
        path = urlsplit(self.path).path
        if path == self.server.telemetry_path:
            self._metrics()
        elif path == "/" and self.command in ("GET", "HEAD"):
            page = LANDING.format(path=html.escape(self.server.telemetry_path, quote=True))
            self._answer(200, page.encode(), [("Content-Type", "text/html; charset=utf-8")])
        else:
            self._answer(404, b"404 page not found\n", [("Content-Type", "text/plain")])

    def _metrics(self):
        got = []
        environ = {"REQUEST_METHOD": self.command, "PATH_INFO": urlsplit(self.path).path,
                   "HTTP_ACCEPT_ENCODING": self.headers.get("Accept-Encoding", "")}
        try:
            body = b"".join(self.server.app(environ, lambda status, headers: got.extend(
                (status, headers))))
            status, headers = got
        except Exception as e:      # noqa: BLE001 - a failed snapshot is this scrape's 500
            body = f"lstrace: cannot read the metrics: {type(e).__name__}: {e}\n".encode()
            status, headers = "500 Internal Server Error", [("Content-Type", "text/plain")]
        self._answer(int(status.split()[0]), body, headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch


class _DeadlineWriter:
    """wfile: every byte sent within `seconds` of the first write in all
    (a socket timeout alone bounds each send, and a client reading slowly
    could stretch a response over many of them)."""

    def __init__(self, sock, seconds):
        self.sock, self.seconds, self.deadline = sock, seconds, None

    def write(self, data):
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds
        view = memoryview(data).cast("B")
        while view:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("response not read in time")
            self.sock.settimeout(left)
            view = view[self.sock.send(view):]
        return len(data)

    def flush(self):
        pass
