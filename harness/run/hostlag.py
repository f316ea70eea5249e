"""The harness's own scheduling lag during a real-time run: a thread that sleeps a fixed period and
measures how late it wakes (the host was busy, or the harness's reader threads held the
interpreter). Windows whose worst lateness reaches the report threshold are kept, on the
collector's clock (seconds since the run's collector was made), like the nodes' `lag` events."""
import threading
import time

from flhil.lagmon import PERIOD_MS, REPORT_US, WINDOW_US


class HarnessLagMonitor(threading.Thread):
    def __init__(self, t0, period_ms=PERIOD_MS):
        super().__init__(daemon=True, name="flhil-harness-lag")
        self.t0 = t0
        self.period = period_ms / 1000.0
        self.windows = []
        self._halt = threading.Event()

    def run(self):
        window_s, report_s = WINDOW_US / 1e6, REPORT_US / 1e6
        w_start = time.monotonic()
        worst = total = 0.0
        worst_at = w_start
        due = w_start + self.period
        while not self._halt.wait(max(0.0, due - time.monotonic())):
            now = time.monotonic()
            late = max(0.0, now - due)
            total += late
            if late > worst:
                worst, worst_at = late, now
            if now - w_start >= window_s:
                if worst >= report_s:
                    self.windows.append({"at_s": round(worst_at - self.t0, 4), "max_ms": round(worst * 1e3, 3),
                                         "sum_ms": round(total * 1e3, 3), "w_ms": round((now - w_start) * 1e3, 1)})
                w_start, worst, total = now, 0.0, 0.0
            due = now + self.period

    def stop(self):
        self._halt.set()
        self.join(1)
        return self.windows
