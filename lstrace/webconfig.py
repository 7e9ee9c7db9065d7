"""`--web.config.file`: Prometheus exporter-toolkit's web configuration file.

Same keys and meaning as the toolkit (web/tls_config.go, web/handler.go), so
one file serves node_exporter, ebpf_exporter and lstrace:

    tls_server_config:        # absent: plain HTTP
      cert_file, key_file     # PEM; relative paths are relative to the file
      client_auth_type        # NoClientCert (default), RequestClientCert,
                              # RequireAnyClientCert, VerifyClientCertIfGiven,
                              # RequireAndVerifyClientCert
      client_ca_file          # CAs that sign client certificates
      min_version, max_version  # TLS10..TLS13 (default TLS12..TLS13)
      prefer_server_cipher_suites   # default true
      client_allowed_sans     # with RequireAnyClientCert/RequireAndVerifyClientCert:
                              # a client certificate must carry one (DNS, IP, email, URI)
    http_server_config:
      headers: {Strict-Transport-Security, X-Content-Type-Options (nosniff),
                X-Frame-Options (deny|sameorigin), X-XSS-Protection,
                Content-Security-Policy}
      http2                   # accepted; lstrace speaks HTTP/1.x only
    basic_auth_users: {user: bcrypt hash}

Toolkit keys lstrace does not implement (inline cert/key/client_ca,
cipher_suites, curve_preferences, rate_limit) are
refused by name rather than silently ignored.  Every problem is one line
naming the file and the key (UsageError, exit 2); `load` builds the server's
ssl.SSLContext too, so an unreadable certificate or a key that does not match
it is reported before anything is loaded into the kernel.
"""
import os
import re
import ssl
from dataclasses import dataclass

from .errors import UsageError
from .tlsauth import accept_any_client_cert

CLIENT_AUTH = {     # toolkit name -> (ssl verify mode, verified against a CA)
    "NoClientCert": (ssl.CERT_NONE, False),
    "RequestClientCert": (ssl.CERT_OPTIONAL, False),
    "RequireAnyClientCert": (ssl.CERT_REQUIRED, False),
    "RequireClientCert": (ssl.CERT_REQUIRED, False),     # the toolkit's old name
    "VerifyClientCertIfGiven": (ssl.CERT_OPTIONAL, True),
    "RequireAndVerifyClientCert": (ssl.CERT_REQUIRED, True),
}
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# the toolkit's extraHTTPHeaders: name -> allowed values (None: any)
HEADERS = {"Strict-Transport-Security": None, "X-Content-Type-Options": ("nosniff",),
           "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": None,
           "Content-Security-Policy": None}
KEYS = {"": {"tls_server_config", "http_server_config", "basic_auth_users"},
        "tls_server_config": {"cert_file", "key_file", "client_auth_type", "client_ca_file",
                              "min_version", "max_version", "prefer_server_cipher_suites",
                              "client_allowed_sans"},
        "http_server_config": {"headers", "http2"}}
NOT_IMPLEMENTED = {"": {"rate_limit"},
                   "tls_server_config": {"cert", "key", "client_ca", "cipher_suites",
                                         "curve_preferences"}}
# $2a$/$2b$/$2y$ (htpasswd -B writes 2y), cost 04-31, 22 salt + 31 hash characters
BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}")


class WebConfigError(UsageError):
    """One line: 'bad --web.config.file PATH: KEY: problem' (exit 2)."""

    def __init__(self, path, key, problem):
        where = f"{key}: " if key else ""
        super().__init__(f"bad --web.config.file {path}: {where}{problem}")


@dataclass(frozen=True)
class WebConfig:
    path: str
    context: object          # ssl.SSLContext, or None for plain HTTP
    users: dict              # user -> bcrypt hash (bytes); empty: no basic auth
    headers: tuple           # ((name, value), ...) added to every response
    files: tuple             # every file it was read from (for reloading)
    summary: str             # one line for the log and --check-config
    allowed_sans: tuple = ()  # client_allowed_sans (IPs normalized); empty: any


def load(path):
    """Read, validate and build the configuration at `path` (WebConfigError)."""
    import yaml
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise WebConfigError(path, "", f"cannot read it: {e.strerror}")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise WebConfigError(path, "", f"not valid YAML{at}: {problem}")
    doc = _mapping(path, "", {} if doc is None else doc)
    _check_keys(path, "", doc)
    tls = _mapping(path, "tls_server_config", doc.get("tls_server_config") or {})
    http = _mapping(path, "http_server_config", doc.get("http_server_config") or {})
    _check_keys(path, "tls_server_config", tls)
    _check_keys(path, "http_server_config", http)
    _bool(path, "tls_server_config", tls, "prefer_server_cipher_suites")
    _bool(path, "http_server_config", http, "http2")
    users = _users(path, doc.get("basic_auth_users") or {})
    headers = _headers(path, http.get("headers") or {})
    base = os.path.dirname(os.path.abspath(path))
    context, files = _tls_context(path, tls, base) if tls else (None, ())
    sans = _allowed_sans(path, tls)
    summary = (f"{'TLS' if context else 'plain HTTP'}"
               + (f", client certificates {tls.get('client_auth_type')}"
                  if context and tls.get("client_auth_type") not in (None, "NoClientCert")
                  else "")
               + f", basic auth {'for ' + str(len(users)) + ' user(s)' if users else 'off'}"
               + (f", {len(sans)} allowed client SAN(s)" if sans else "")
               + (f", {len(headers)} extra header(s)" if headers else ""))
    return WebConfig(os.path.abspath(path), context, users, headers,
                     (os.path.abspath(path), *files), summary, sans)


def _mapping(path, key, value):
    if not isinstance(value, dict):
        raise WebConfigError(path, key or "top level",
                             f"expected a mapping of keys, got {type(value).__name__}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise WebConfigError(path, key or "top level", f"key {bad[0]!r} is not a string")
    return value


def _check_keys(path, section, doc):
    prefix = f"{section}." if section else ""
    for k in doc:
        if k in NOT_IMPLEMENTED.get(section, ()):
            raise WebConfigError(path, prefix + k, "an exporter-toolkit key lstrace does not "
                                 "implement; remove it")
        if k not in KEYS[section]:
            raise WebConfigError(path, prefix + k, "unknown key (known: "
                                 + ", ".join(sorted(KEYS[section])) + ")")


def _allowed_sans(path, tls):
    from .tlsauth import normalize_san
    sans = tls.get("client_allowed_sans")
    if sans is None:
        return ()
    key = "tls_server_config.client_allowed_sans"
    if not isinstance(sans, list) or not all(isinstance(v, str) for v in sans):
        raise WebConfigError(path, key, "expected a list of strings")
    if tls.get("client_auth_type") not in ("RequireAnyClientCert", "RequireClientCert",
                                           "RequireAndVerifyClientCert"):
        raise WebConfigError(path, key, "requires client_auth_type to be one of "
                             "RequireAnyClientCert or RequireAndVerifyClientCert")
    return tuple(normalize_san(v) for v in sans)


def _bool(path, section, doc, key):
    if key in doc and not isinstance(doc[key], bool):
        raise WebConfigError(path, f"{section}.{key}", f"expected true or false, got "
                             f"{doc[key]!r}")


def _users(path, users):
    users = _mapping(path, "basic_auth_users", users)
    out = {}
    for name, hashed in users.items():
        key = f"basic_auth_users.{name}"
        if not isinstance(hashed, str) or not BCRYPT.fullmatch(hashed):
            raise WebConfigError(path, key, "not a bcrypt hash (make one with "
                                 "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`; plain-text "
                                 "passwords are refused)")
        out[name] = hashed.encode()
    return out


def _headers(path, headers):
    headers = _mapping(path, "http_server_config.headers", headers)
    for name, value in headers.items():
        key = f"http_server_config.headers.{name}"
        if name not in HEADERS:
            raise WebConfigError(path, key, "this header can not be configured (allowed: "
                                 + ", ".join(HEADERS) + ")")
        if not isinstance(value, str):
            raise WebConfigError(path, key, "expected a string")
        if HEADERS[name] and value not in HEADERS[name]:
            raise WebConfigError(path, key, f"invalid value {value!r} (expected one of: "
                                 + ", ".join(HEADERS[name]) + ")")
    return tuple(sorted(headers.items()))


def _string(path, tls, key, default=""):
    value = tls.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise WebConfigError(path, f"tls_server_config.{key}", "expected a string")
    return value


def _file(path, tls, key, base):
    """A referenced file's absolute path, readable now, or WebConfigError."""
    name = _string(path, tls, key)
    if not name:
        return ""
    full = os.path.join(base, name)
    try:
        with open(full, "rb") as f:
            f.read(1)
    except OSError as e:
        raise WebConfigError(path, f"tls_server_config.{key}", f"cannot read {full}: "
                             f"{e.strerror}")
    return full


def _version(path, tls, key, default):
    name = _string(path, tls, key, default)
    if name not in TLS_VERSIONS:
        raise WebConfigError(path, f"tls_server_config.{key}", f"unknown TLS version "
                             f"{name!r} (one of {', '.join(TLS_VERSIONS)})")
    return TLS_VERSIONS[name]


def _tls_context(path, tls, base):
    """The server's SSLContext for a non-empty tls_server_config, and its files."""
    cert, key = _file(path, tls, "cert_file", base), _file(path, tls, "key_file", base)
    if not cert:
        raise WebConfigError(path, "tls_server_config.cert_file", "missing (TLS needs "
                             "cert_file and key_file)")
    if not key:
        raise WebConfigError(path, "tls_server_config.key_file", "missing (TLS needs "
                             "cert_file and key_file)")
    auth = _string(path, tls, "client_auth_type", "NoClientCert") or "NoClientCert"
    if auth not in CLIENT_AUTH:
        raise WebConfigError(path, "tls_server_config.client_auth_type",
                             f"invalid {auth!r} (one of {', '.join(CLIENT_AUTH)})")
    ca = _file(path, tls, "client_ca_file", base)
    mode, verified = CLIENT_AUTH[auth]
    if ca and mode == ssl.CERT_NONE:
        raise WebConfigError(path, "tls_server_config.client_ca_file", "client CAs configured "
                             "without a client_auth_type that asks for certificates")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _version(path, tls, "min_version", "TLS12")
    ctx.maximum_version = _version(path, tls, "max_version", "TLS13")
    if ctx.minimum_version > ctx.maximum_version:
        raise WebConfigError(path, "tls_server_config.min_version", "is above max_version")
    if tls.get("prefer_server_cipher_suites", True) is False:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_pair(path, ctx, cert, key)
    ctx.verify_mode = mode
    if verified and ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (ssl.SSLError, ValueError) as e:
            raise WebConfigError(path, "tls_server_config.client_ca_file",
                                 f"{ca} holds no usable PEM certificate ({_reason(e)})")
    elif verified:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)     # Go: the system's roots
    elif mode != ssl.CERT_NONE:
        problem = accept_any_client_cert(ctx)
        if problem:
            raise WebConfigError(path, "tls_server_config.client_auth_type",
                                 f"{auth} is not available here: {problem}")
    return ctx, tuple(f for f in (cert, key, ca) if f)


def _load_pair(path, ctx, cert, key):
    try:
        ctx.load_cert_chain(cert, key, password=lambda: b"")   # never a prompt
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise WebConfigError(path, "tls_server_config.key_file",
                                 f"{key} does not match cert_file {cert}")
        if not _has_pem(cert, b"-----BEGIN CERTIFICATE-----"):
            raise WebConfigError(path, "tls_server_config.cert_file",
                                 f"{cert} holds no PEM certificate")
        raise WebConfigError(path, "tls_server_config.key_file",
                             f"{key} holds no usable PEM private key for {cert} "
                             f"({_reason(e)})")


def _has_pem(name, marker):
    with open(name, "rb") as f:
        return marker in f.read()


def _reason(e):
    return getattr(e, "reason", None) or str(e)

