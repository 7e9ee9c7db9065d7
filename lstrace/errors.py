"""Errors users see as one line, each with its documented exit code."""
import functools
import signal
import sys
import threading

# Exit codes (README "Exit codes" lists them; sysexits.h where one fits)
EXIT_OK = 0
EXIT_FAILURE = 1        # runtime failure not covered below
EXIT_USAGE = 2          # bad flag or argument (click's own code too)
EXIT_NO_PROBE = 3       # nothing could be attached
EXIT_UNAVAILABLE = 69   # EX_UNAVAILABLE: BCC, BTF or kernel headers missing
EXIT_CANTCREAT = 73     # EX_CANTCREAT: cannot write an output file
EXIT_PORT = 75          # address/port already in use (EX_TEMPFAIL)
EXIT_PERM = 77          # EX_NOPERM: not root / missing CAP_BPF, CAP_PERFMON


class LstraceError(Exception):
    """A failure the user can act on: printed as 'lstrace: <message>'."""
    exit_code = EXIT_FAILURE

    def __init__(self, message, exit_code=None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(LstraceError):
    exit_code = EXIT_USAGE


class PermissionDenied(LstraceError):
    exit_code = EXIT_PERM


class Unavailable(LstraceError):
    exit_code = EXIT_UNAVAILABLE


class NoProbeAttached(LstraceError):
    exit_code = EXIT_NO_PROBE


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _term_as_interrupt(_signum, _frame):
    raise KeyboardInterrupt


def friendly_errors(fn):
    """Turn LstraceError (and Ctrl-C) into 'lstrace: message' + exit code.
    SIGTERM is Ctrl-C while the command runs (Python would die without running
    any cleanup); commands that treat Ctrl-C as "stop" (top, hist) exit 0 then.
    SIGINT is set too: a process started in the background by a non-interactive
    shell inherits SIGINT ignored, and would otherwise never stop on it.
    Lives here, not in cli.py, so command modules can use it while cli.py
    imports them."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, _term_as_interrupt) for s in STOP_SIGNALS} if main else {}
        try:
            return fn(*args, **kwargs)
        except LstraceError as e:
            print(f"lstrace: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    return wrapper
