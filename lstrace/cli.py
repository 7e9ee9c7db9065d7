"""lstrace's command line (click).  Each command lives in its own module and
is registered here; every error reaches the user as one line and an exit
code from lstrace.errors, never as a traceback."""
import click

from . import __version__
from .doctor import doctor
from .hist import hist
from .repro.cli import repro
from .serve import serve
from .top import top


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lstrace")
def main():
    """Live per-CPU health of BPF local storage and rqspinlocks."""


for _command in (doctor, serve, top, hist, repro):
    main.add_command(_command)
