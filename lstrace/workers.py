"""The request threads of lstrace.httpserver: at most `limit` at work at once."""
import queue
import threading

IDLE_SECONDS = 30.0          # a worker thread idle this long exits


class Workers:
    """At most `limit` requests in flight (0: no limit), on threads started
    when needed and kept for the next requests until idle IDLE_SECONDS."""

    def __init__(self, limit, work):
        self.limit, self.work = limit, work
        self._lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self.in_flight = self.threads = 0

    def submit(self, item):
        with self._lock:
            if self.limit and self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            start = self.threads < self.in_flight
            if start:
                self.threads += 1
        self._queue.put(item)
        if start:
            threading.Thread(target=self._run, name="http-worker", daemon=True).start()
        return True

    def _run(self):
        while True:
            try:
                item = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self.threads > self.in_flight:    # a spare: the others suffice
                        self.threads -= 1
                        return
                continue
            if item is None:
                return
            try:
                self.work(item)
            finally:
                with self._lock:
                    self.in_flight -= 1

    def stop(self):
        with self._lock:
            n = self.threads
        for _ in range(n):
            self._queue.put(None)
