"""Clocks in integer microseconds. The runtime never reads time any other way, so a virtual-time
event loop (CPython) or a skewed clock (fault layer) can stand in for the real one."""
from flhil.compat import asyncio, MICROPYTHON
import time


class Clock:
    """Monotonic time of this node. `rate` is how fast this clock runs against the event loop's."""
    rate = 1.0

    def now_us(self):
        raise NotImplementedError

    def real_s(self, us):
        """Event-loop seconds that pass while this clock advances `us` microseconds."""
        return max(0, us) / (1e6 * self.rate)

    async def sleep_until(self, t_us):
        # MicroPython's asyncio.sleep truncates to whole milliseconds and can end up to ~2 ms
        # early: sleep again for what is left (a sub-millisecond rest is a few zero sleeps)
        while True:
            delta = t_us - self.now_us()
            if delta <= 0:
                return
            await asyncio.sleep(self.real_s(delta))


if MICROPYTHON:
    class LoopClock(Clock):
        """ticks_us unwrapped into an ever-growing integer."""

        def __init__(self):
            self._last = time.ticks_us()
            self._us = 0

        def now_us(self):
            t = time.ticks_us()
            self._us += time.ticks_diff(t, self._last)
            self._last = t
            return self._us
else:
    class LoopClock(Clock):
        """The running event loop's clock, so a virtual-time loop makes the whole node virtual."""

        def __init__(self, loop=None):
            self._loop = loop

        def now_us(self):
            loop = self._loop or asyncio.get_event_loop()
            return int(loop.time() * 1e6)


class SkewedClock(Clock):
    """A clock that runs `ppm` parts per million fast (negative: slow) from the moment it is made."""

    def __init__(self, base, ppm):
        self.base = base
        self.rate = 1.0 + ppm / 1e6
        self._origin = base.now_us()

    def now_us(self):
        b = self.base.now_us()
        return self._origin + int((b - self._origin) * self.rate)
