"""The loader's wire: one SOCK_SEQPACKET message = one pickled dict (+ fds
over SCM_RIGHTS); objects too big for one message (kallsyms) travel in a
memfd; a child's LstraceError travels as a message and is raised again as
the same class in the parent."""
import os
import pickle
import socket

from .. import errors
from ..errors import LstraceError

MAX_MSG = 1 << 20          # one pickled message (plans, layout, names: tens of KiB)
MAX_FDS = 250              # SCM_MAX_FD is 253 per message


def send(sock, obj, fds=()):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if len(fds) > MAX_FDS:
        raise ValueError(f"{len(fds)} fds in one message (at most {MAX_FDS})")
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def recv(sock):
    """(message, fds); (None, []) at EOF."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MSG, MAX_FDS)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise LstraceError("loader message truncated")
    if not data:
        return None, fds
    return pickle.loads(data), fds


def error_reply(e):
    """The reply that carries exception e (an LstraceError as itself, anything
    else as a generic LstraceError naming it)."""
    if isinstance(e, LstraceError):
        return {"error": {"type": type(e).__name__, "message": str(e),
                          "exit_code": e.exit_code}}
    return {"error": {"type": "LstraceError", "exit_code": errors.EXIT_FAILURE,
                      "message": f"the BPF loader failed: {type(e).__name__}: {e}"}}


def raise_error(err):
    """Raise the LstraceError an error reply's "error" carries."""
    cls = getattr(errors, err["type"], LstraceError)
    if not (isinstance(cls, type) and issubclass(cls, LstraceError)):
        cls = LstraceError
    raise cls(err["message"], err["exit_code"])


def to_memfd(obj, name="lstrace"):
    """A memfd holding obj pickled: megabytes (kallsyms) do not fit one
    SOCK_SEQPACKET message (~200 KiB), an fd does."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def from_memfd(fd):
    """The object to_memfd wrote (closes fd)."""
    try:
        size = os.fstat(fd).st_size
        with open(fd, "rb", closefd=False) as f:
            f.seek(0)
            data = f.read(size)
        return pickle.loads(data)
    finally:
        os.close(fd)
