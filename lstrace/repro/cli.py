"""`lstrace repro`: is my kernel affected?

Runs workloads that make BPF local-storage helpers and rqspinlock fail (or
show they do not), counting every result per CPU from inside the workload.
Exit status: 0 whether or not the kernel is affected; 2 bad arguments;
69 clang/bpftool/libbpf missing (the message names the apt-get command);
77 not root; 1 any other error; 130 interrupted. Never a traceback: every
error is an lstrace.errors.LstraceError, printed as one line by
friendly_errors like every other command.

--json prints one object:
  version      1
  kernel       {"release", "generation" (A|B|C), "res_spin_lock", "cgrp_storage",
                "task_storage_busy", "cgrp_storage_busy"}
  duration     seconds given to each timed case
  cpus         CPU numbers used
  affected     true when any case saw a busy/deadlock/timeout failure
  cases        {name: case}, each case:
    name, runnable, reason ("" when it ran), cpus, duration, params,
    functions  kernel functions / tracepoints the case exercised
    per_cpu    {"<cpu>": {"calls","ok","busy","deadlock","timeout","nomem",
                          "not_found","other"}}: summed over groups
    groups     {"<helper, kfunc or syscall>": {"<cpu>": same counts}}
    errnos     syscall-errors: {"<cpu>": {"<map kind>:<cmd>": {"ok"|"EEXIST"|...: n}}}
    visible    rqspinlock: {"<cpu>": workload failures its own raw_tp saw at
               lock:contention_end (ret < 0)}
    failures   rqspinlock: {"made": {"<cpu>": F}, "visible": {"<cpu>": F},
               "not_visible": {"<cpu>": n}, "blind_spot": text}, F = {"total",
               "deadlock", "timeout", "other", "by_kind": {"aa","abba","timeout",
               "aa-queued": n}}: failures the workload made vs failures visible
               at lock:contention_end; the difference is the tracepoint's blind spot
    expected   helper-calls, syscall-errors: the counts the case is built to give, per CPU
    extra      case specifics (skipped parts, lock_addrs, busy_per_cpu,
               recursion_misses, visible_by_kind; htab-*: nested_by_hook,
               nested_other_errno, last_arm_failure, filter, bucket_lock, problems, ...)
    affected, verdict (one line)
    extra.lstrace  (without --no-lstrace) {"reason": why lstrace did not run, or "",
               "views": {lock user: exact|partial|none}, "why": {lock user: text},
               "rows": [{"cpu", "errno", "kind", "lock_user", "made", "counted"}]}: the
               case's rqspinlock failures beside lstrace_rqspinlock_failures_total's
               delta over the case (rqspinlock, htab-deadlock)
"""
import click

from ..errors import LstraceError, UsageError, friendly_errors
from ..options import duration_option, json_option

CASE_HELP = "case to run (repeatable); default: every case that applies here"


@click.command("repro")
@click.option("--case", "cases", multiple=True, metavar="NAME", help=CASE_HELP)
@duration_option(5.0, help="Seconds for each timed case.")
@click.option("--cpus", metavar="LIST", help="CPUs to use, e.g. 0,1 or 0-3 (default: all)")
@json_option
@click.option("--list", "list_only", is_flag=True, help="list the cases and exit")
@click.option("--lstrace/--no-lstrace", "observe", default=True, show_default=True,
              help="run lstrace beside the cases and show what it counted next to what "
                   "they made (rqspinlock, htab-deadlock)")
@friendly_errors
def repro(cases, duration, cpus, as_json, list_only, observe):
    """Provoke local-storage / rqspinlock / hash-map failures and count them per CPU.

    \b
    Examples:
      lstrace repro                               # every case that applies here
      lstrace repro --case rqspinlock -d 5        # made vs seen at contention_end
      lstrace repro --case htab-busy --case htab-deadlock --cpus 0,1 --json
    """
    try:
        _main(cases, duration, cpus, as_json, list_only, observe)
    except (LstraceError, KeyboardInterrupt):
        raise
    except Exception as e:          # one line, never a traceback
        first = str(e).splitlines()[0] if str(e) else ""
        raise LstraceError(f"error: {type(e).__name__}: {first}") from None


def _main(cases, duration, cpus, as_json, list_only, observe):
    from . import CASES, applicable, preflight, report, resolve_cpus, run_case
    from .observe import Observer, Unobserved
    from .result import CaseResult

    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise UsageError(f"unknown case {unknown[0]!r} (known: {', '.join(CASES)})")
    if duration <= 0:
        raise UsageError("--duration must be positive")
    if list_only:
        click.echo(report.list_cases(CASES, applicable()))
        return
    preflight()             # NotRoot: 77; clang, bpftool, libbpf missing: 69
    try:
        cpu_list = resolve_cpus(cpus)
    except UsageError as e:
        raise UsageError(f"--cpus: {e}") from None
    reasons = applicable()
    names = list(cases) or list(CASES)
    results = []
    if observe and not as_json:
        click.echo("starting lstrace beside the cases (--no-lstrace: without) ...", err=True)
    with (Observer() if observe else Unobserved()) as seen:
        for name in names:
            if not cases and reasons[name] is not None:
                results.append(CaseResult(name, runnable=False, reason=reasons[name],
                                          cpus=cpu_list))
                continue
            if not as_json:
                click.echo(f"running {name} ...", err=True)
            results.append(seen.run(CASES[name], lambda: run_case(name, duration=duration,
                                                                 cpus=cpu_list)))
    if as_json:
        click.echo(report.to_json(results, duration, cpu_list))
    else:
        click.echo(report.to_text(results))


if __name__ == "__main__":
    repro()
