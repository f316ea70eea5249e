"""A sweep's progress: a bar on a terminal (cases done of total, failures, rate, time left),
one plain line per finished case elsewhere (a CI log, a pipe). Failures get a line either way."""
import sys
import time

BAR_WIDTH = 24


class Progress:
    def __init__(self, total, skipped=0, stream=None, tty=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total = total
        self.skipped = skipped
        self.done = skipped
        self.failed = 0
        self.t0 = time.monotonic()
        self._drawn = False
        self.draw()

    def rate(self):
        """Cases per second run by this invocation (skipped ones do not count)."""
        ran = self.done - self.skipped
        elapsed = time.monotonic() - self.t0
        return ran / elapsed if ran and elapsed > 0 else 0.0

    def status(self):
        rate = self.rate()
        left = self.total - self.done
        eta = " ~%ds left" % round(left / rate) if rate and left else ""
        return "%d/%d cases, %d failed, %.2f cases/s%s" % (self.done, self.total, self.failed, rate, eta)

    def draw(self):
        if not self.tty:
            return
        filled = BAR_WIDTH * self.done // max(1, self.total)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self.stream.write("\r[%s] %s\x1b[K" % (bar, self.status()))
        self.stream.flush()
        self._drawn = True

    def case(self, ok, line):
        """One case finished: `line` says which and how it went."""
        self.done += 1
        self.failed += 0 if ok else 1
        if self.tty:
            if not ok:
                self.stream.write("\r\x1b[K%s\n" % line)
            self.draw()
        else:
            self.stream.write("[%d/%d] %s\n" % (self.done, self.total, line))
            self.stream.flush()

    def close(self):
        if self._drawn:
            self.stream.write("\n")
        self.stream.write("%s in %.1fs\n" % (self.status(), time.monotonic() - self.t0))
        self.stream.flush()
