"""One vocabulary of flags for every command: the same name, short form and
meaning wherever a flag exists (-d/--duration, -i/--interval, --json,
--mode, --probes, -v/--verbose)."""
import click

MODES = ("auto", "fentry", "kprobe")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
mode_option = click.option(
    "--mode", type=click.Choice(MODES), default="auto", show_default=True,
    help="Mode of function probes: the best available, or force one (to compare); "
    "kprobe attaches no program through BTF (bpf_syscall: raw_tp sys_exit).")
probes_option = click.option("--probes", "probe_list", default=None, metavar="LIST",
                             help="Comma-separated probes or groups (default: every probe "
                             "but the opt-in groups; +maps adds the hash-map operation "
                             "probes).")
verbose_option = click.option(
    "-v", "--verbose", is_flag=True,
    help="Name each unavailable probe with its reason (default: one line per reason).")


def duration_option(default=0.0, help="Stop after SECONDS (default: until Ctrl-C)."):
    return click.option("-d", "--duration", type=float, default=default, metavar="SECONDS",
                        show_default=bool(default), help=help)


def interval_option(default, help):
    return click.option("-i", "--interval", type=float, default=default, metavar="SECONDS",
                        show_default=bool(default), help=help)


# Latency is opt-in: it adds an entry program and two clock reads to every
# probed call (counting mode, the default, runs one exit program and no clock).
latency_option = click.option(
    "--latency", is_flag=True,
    help="Also measure latency histograms (adds an entry program and clock reads to every "
         "probed call; default: counting mode, exit programs only).")
