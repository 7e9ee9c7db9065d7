"""Run one function per CPU in pinned threads until a deadline."""
import threading
import time

from ...workload import pinned


def on_cpus(fn_for_cpu, cpus, duration):
    """fn_for_cpu(cpu) -> callable(deadline) run on a thread pinned to cpu.

    Threads start together (barrier) so contention really overlaps; the
    first exception from any thread is re-raised here.
    """
    errors = []
    barrier = threading.Barrier(len(cpus))

    def body(cpu):
        try:
            with pinned(cpu):
                work = fn_for_cpu(cpu)
                barrier.wait()
                work(time.monotonic() + duration)
        except BaseException as e:        # surfaced in the caller
            errors.append(e)
            barrier.abort()

    ts = [threading.Thread(target=body, args=(c,), daemon=True) for c in cpus]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
