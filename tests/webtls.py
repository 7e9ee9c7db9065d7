"""Helpers of the web-config tests: a throw-away PKI made with the real
`openssl` (a CA, a server certificate for localhost/127.0.0.1, a client
certificate signed by the CA and one self-signed), bcrypt hashes, web config
files, and a real `lstrace serve` started with them."""
import signal
import socket
import subprocess
import threading

import bcrypt
import pytest

from support import ROOT, free_port, lstrace_cmd, wait_for

OPENSSL = "openssl"
CURL = "curl"
USER, PASSWORD = "prometheus", "s3cret scrape"
CLIENT_DNS, CLIENT_URI = "scraper.lstrace.test", "spiffe://lstrace.test/prometheus"
# bcrypt cost 10, as htpasswd -B writes it; hashed once per test session
_HASHES = {}


def bcrypt_hash(password=PASSWORD):
    if password not in _HASHES:
        _HASHES[password] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
    return _HASHES[password]


def _openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d):
    """ECDSA P-256 keys (cheap handshakes for the flood tests) in directory `d`."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=lstrace test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.ext").write_text(f"subjectAltName=DNS:{CLIENT_DNS},URI:{CLIENT_URI}\n")
    for name in ("server", "client"):
        ext = ["-extfile", f"{name}.ext"]
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)
    _openssl("req", "-x509", *ec, "-keyout", "stranger.key", "-out", "stranger.crt",
             "-days", "2", "-subj", "/CN=stranger", cwd=d)
    return d


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A fresh PKI per test module (tests import this fixture)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_config(client_auth=None, users=True, headers=True):
    """A web config text (paths relative to the PKI directory it is written to)."""
    lines = ["tls_server_config:", "  cert_file: server.crt", "  key_file: server.key"]
    if client_auth:
        lines += [f"  client_auth_type: {client_auth}", "  client_ca_file: ca.crt"]
    if users:
        lines += ["basic_auth_users:", f"  {USER}: '{bcrypt_hash()}'"]
    if headers:
        lines += ["http_server_config:", "  headers:", "    X-Content-Type-Options: nosniff"]
    return "\n".join(lines) + "\n"


def curl(url, *args, pki=None, timeout=10):
    """(HTTP code or 0, curl's exit code, body) of one request by the real curl."""
    ca = ["--cacert", str(pki / "ca.crt")] if pki else []
    r = subprocess.run([CURL, "-sS", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}",
                        *ca, *args, url], capture_output=True, text=True, timeout=timeout + 5)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), r.returncode, body + r.stderr


class _Plain:
    """The web config without --web.config.file."""
    context, users, headers = None, {}, ()


def in_process(app, config=_Plain, **kw):
    """lstrace's HTTP layer alone (no BPF) on a loopback port: (server, base URL)."""
    from lstrace import httpserver
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = httpserver.BoundedServer(sock, app, lambda: config, **kw)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{sock.getsockname()[1]}"


class Served:
    """A real `lstrace serve` (tracepoints: this host) on a free loopback port."""

    def __init__(self, *args, scheme="http", pki=None, auth=(), listen_flag="--listen",
                 path="/metrics", prefix=()):
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}{path}"
        if path != "/metrics":
            args = ("--web.telemetry-path", path, *args)
        self.proc = subprocess.Popen(
            [*prefix, *lstrace_cmd("serve", listen_flag, f"127.0.0.1:{self.port}", "--probes",
                        "bpf_syscall", *args)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.pki, self.auth = pki, list(auth)
        try:
            wait_for(lambda: "lstrace_build_info" in self.get()[2], 60, "lstrace serve",
                     self.proc)
        except BaseException as e:
            rc, err = self.stop()
            raise AssertionError(f"lstrace serve {' '.join(args)}: exit {rc}: {err}") from e

    def get(self, *args):
        return curl(self.url, *self.auth, *args, pki=self.pki)

    def status(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return dict(line.split(":\t", 1) for line in f)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        return rc, err

