"""The request threads of lstrace.httpserver: at most `limit` requests in
flight, on at most `limit` threads.

A request holds its slot until its answer starts to go out (the handler calls
`release` before writing it; promhttp's MaxRequestsInFlight frees its slot
when the handler returns, before the last bytes are flushed): a scraper that
sends its next request the moment it has read an answer always finds that
slot free.  The thread may still be writing then (at most the server's write
time-out); a request that got a slot meanwhile waits in the queue for a
thread rather than starting one more."""
import queue
import threading

IDLE_SECONDS = 30.0          # a worker thread idle this long exits


class Workers:
    def __init__(self, limit, work):
        """`limit`: slots and threads at most (0: no limit); `work(item, release)`."""
        self.limit, self.work = limit, work
        self._lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self.in_flight = 0       # slots taken
        self.pending = 0         # items submitted and not finished by a thread
        self.threads = 0

    def submit(self, item):
        """Queue `item` if a slot is free (True), else False (answer 503)."""
        with self._lock:
            if self.limit and self.in_flight >= self.limit:
                return False
            self.in_flight += 1
            self.pending += 1
            start = self.threads < self.pending and not (self.limit and
                                                         self.threads >= self.limit)
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
                    if self.threads > self.pending:      # a spare: the others suffice
                        self.threads -= 1
                        return
                continue
            if item is None:
                return
            released = []

            def release():
                with self._lock:
                    if not released:
                        released.append(True)
                        self.in_flight -= 1
            try:
                self.work(item, release)
            finally:
                release()
                with self._lock:
                    self.pending -= 1

    def stop(self):
        with self._lock:
            n = self.threads
        for _ in range(n):
            self._queue.put(None)
