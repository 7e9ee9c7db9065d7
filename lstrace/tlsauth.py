"""Client certificates: asked for but not verified (the toolkit's
RequestClientCert and RequireAnyClientCert), and client_allowed_sans.

Python's ssl module verifies every client certificate it receives (CERT_OPTIONAL
/ CERT_REQUIRED) and has no verify callback, while Go's RequestClientCert and
RequireAnyClientCert take any certificate the client proves it holds the key
of.  OpenSSL has exactly that: SSL_CTX_set_verify with a callback that accepts
every certificate (the handshake still checks the client's signature).  This
sets it on the SSL_CTX of a Python SSLContext through ctypes, keeping the
verify mode Python set.  The SSL_CTX pointer is the first field after the
object header in CPython's PySSLContext; it is used only after checking that
OpenSSL reports the same verify mode and options Python set on it, and
otherwise the caller reports the mode as unavailable (never a guess).
"""
import ctypes
import ipaddress
import ssl

_VERIFY_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


@_VERIFY_CB
def _accept(_preverify_ok, _store_ctx):
    return 1


def _libssl():
    """The libssl the interpreter's _ssl module uses (already mapped)."""
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "/libssl.so" in line}
    if len(paths) != 1:
        return None
    lib = ctypes.CDLL(paths.pop())
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CB]
    lib.SSL_CTX_set_verify.restype = None
    return lib


def accept_any_client_cert(ctx):
    """Make `ctx` (verify_mode already CERT_OPTIONAL or CERT_REQUIRED) accept
    any client certificate.  Returns None, or why it could not."""
    want = {ssl.CERT_OPTIONAL: 0x1, ssl.CERT_REQUIRED: 0x1 | 0x2}.get(ctx.verify_mode)
    if want is None:
        return "verify mode is neither CERT_OPTIONAL nor CERT_REQUIRED"
    try:
        lib = _libssl()
    except (OSError, AttributeError) as e:
        return f"libssl: {e}"
    if lib is None:
        return "cannot tell which libssl Python's ssl module uses"
    ptr = ctypes.c_void_p.from_address(id(ctx) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    if not ptr or lib.SSL_CTX_get_options(ptr) != int(ctx.options) \
            or lib.SSL_CTX_get_verify_mode(ptr) & 0x3 != want:
        return "this Python's SSLContext layout is not the one expected"
    lib.SSL_CTX_set_verify(ptr, lib.SSL_CTX_get_verify_mode(ptr), _accept)
    return None


SAN_KINDS = ("DNS", "email", "IP Address", "URI")      # Go's DNSNames, Emails, IPs, URIs


def normalize_san(value):
    """IP addresses as Go prints them (ip.String()), anything else as is."""
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value


def san_allowed(peer_cert, allowed):
    """Whether the client certificate (ssl getpeercert()) carries one of the
    `allowed` subject alternative names (the toolkit's VerifyPeerCertificate)."""
    names = (peer_cert or {}).get("subjectAltName", ())
    return any(normalize_san(v) in allowed for kind, v in names if kind in SAN_KINDS)
