"""The long-running process's side of the loader: start the child
(`python -m lstrace.loader`), ask, wait for answers, and reap it."""
import os
import signal
import socket
import subprocess
import sys

from ..errors import LstraceError
from .wire import raise_error, recv, send, to_memfd


def _pythonpath():
    """The directory lstrace is imported from, first on the child's path."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rest = os.environ.get("PYTHONPATH")
    return here + (os.pathsep + rest if rest else "")


class Loader:
    """The parent's handle on one loader child."""

    def __init__(self):
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lstrace.loader", str(child.fileno()), str(os.getpid())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": _pythonpath()})
        except BaseException:
            self.sock.close()
            raise
        finally:
            child.close()

    @property
    def alive(self):
        return self.sock is not None

    def request(self, msg):
        """Send one request; (reply, fds).  Raises the child's LstraceError."""
        self.ask(msg)
        return self.answer()

    def ask(self, msg):
        """Send a request; answer() waits for its reply (do other work in between)."""
        if self.sock is None:
            raise LstraceError("the BPF loader has exited")
        try:
            send(self.sock, msg)
        except OSError:
            pass          # the child is gone: answer() says how

    def send_symbols(self, kallsyms):
        """The second message of a start: this process's Kallsyms for the child."""
        fd = to_memfd(kallsyms, "lstrace-kallsyms")
        try:
            send(self.sock, {"op": "kallsyms"}, [fd])
        except OSError:
            pass          # the child is gone: answer() says how
        finally:
            os.close(fd)

    def answer(self):
        try:
            reply, fds = recv(self.sock)
        except OSError as e:
            reply, fds = None, []
            why = e.strerror
        else:
            why = "no reply"
        if reply is None:
            raise LstraceError(f"the BPF loader process {self._died(why)} before lstrace's "
                               "programs were loaded")
        if "error" in reply:
            raise_error(reply["error"])
        return reply, fds

    def _died(self, why):
        """How the child ended (reaped, and killed if it had not yet)."""
        try:
            rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        self.kill()
        if rc is not None and rc < 0:
            return f"was killed by {signal.Signals(-rc).name}"
        return f"exited ({'exit code ' + str(rc) if rc is not None else why})"

    def close(self):
        """Tell the child it is done and reap it (killed if it does not go)."""
        if self.sock is not None:
            try:
                send(self.sock, {"op": "exit"})
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        if self.proc.poll() is None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.close()
