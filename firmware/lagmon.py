"""The node's own scheduling lag: how late its event loop runs what is due.

A small task sleeps a fixed period and measures how late it wakes. Lateness is split by the CPU
time this process used meanwhile: the part the process did not spend on its CPU is the host's
(the process was ready but not running: other processes had the cores), the rest is the node's
own (a callback that blocked the loop, a collection). A frame that reaches the socket while the
loop is late waits in the socket for as long, so the same figure bounds how late frames are
handled. A board has no CPU clock and shares its CPU with nothing: all its lag is its own.

Telemetry stays cheap: one `lag` event per window (100 ms) whose worst lateness reaches 5 ms, with
the worst (`max`), its host part (`host`), the window's total lateness (`sum`, `host_sum`) and the
time of the worst (`at`), all in microseconds on the node's clock."""
from flhil.compat import asyncio, cpu_us

PERIOD_MS = 10      # how often the monitor wakes
WINDOW_US = 100000  # one summary per window
REPORT_US = 5000    # windows whose worst lateness is below this are not reported


class LagMonitor:
    def __init__(self, clock, tel, period_ms=PERIOD_MS):
        self.clock = clock
        self.tel = tel
        self.period_us = int(period_ms * 1000)
        self._task = None
        self._reset(clock.now_us())

    def _reset(self, now):
        self.w_start = now
        self.worst = 0
        self.worst_host = 0
        self.worst_at = now
        self.total = 0
        self.total_host = 0

    def start(self):
        self._task = asyncio.create_task(self._run())
        return self

    def stop(self):
        """Cancel the task and report the window in progress."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self._report(self.clock.now_us())

    async def _run(self):
        clock = self.clock
        due = clock.now_us() + self.period_us
        cpu = cpu_us()
        while True:
            await asyncio.sleep(clock.real_s(due - clock.now_us()))
            now = clock.now_us()
            late = now - due
            if late < 0:
                late = 0  # MicroPython's sleep may end up to a millisecond early
            c = cpu_us()
            if cpu is None:
                host = None
            else:
                host = late - (c - cpu)  # ready but not running: at least this long
                if host < 0:
                    host = 0
            cpu = c
            self._count(now, late, host)
            due = now + self.period_us

    def _count(self, now, late, host):
        if late > self.worst:
            self.worst = late
            self.worst_at = now
        self.total += late
        if host is None:
            self.worst_host = None
        elif self.worst_host is not None:
            self.total_host += host
            if host > self.worst_host:
                self.worst_host = host
        if now - self.w_start >= WINDOW_US:
            self._report(now)

    def _report(self, now):
        if self.worst >= REPORT_US:
            host = self.worst_host
            self.tel.emit("lag", w=now - self.w_start, max=self.worst, at=self.worst_at, sum=self.total,
                          host=host, host_sum=None if host is None else self.total_host)
        self._reset(now)

