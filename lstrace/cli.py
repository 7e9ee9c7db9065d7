"""lstrace's command line (click).  Each command lives in its own module and
is registered here; every error reaches the user as one line and an exit
code from lstrace.errors, never as a traceback."""
import functools
import sys

import click

from . import __version__
from .errors import LstraceError


def friendly_errors(fn):
    """Turn LstraceError (and Ctrl-C) into 'lstrace: message' + exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LstraceError as e:
            click.echo(f"lstrace: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lstrace")
def main():
    """Live per-CPU health of BPF local storage and rqspinlocks."""


def _register():
    from .doctor import doctor
    main.add_command(doctor)
    for module, name in (("lstrace.serve", "serve"), ("lstrace.top", "top"),
                         ("lstrace.hist", "hist"), ("lstrace.repro.cli", "repro")):
        try:
            mod = __import__(module, fromlist=[name])
        except ImportError:
            continue      # a command still being built; the rest work
        main.add_command(getattr(mod, name))


_register()
