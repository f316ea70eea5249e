"""mpremote's serial transport (pinned: mpremote 1.29.0, whose Transport is not a stable API) under
fl-hil's deadlines.

mpremote sends code (raw-paste with its flow control, or plain raw mode) and does the file
operations (`fs_writefile`, `fs_readfile`, `fs_mkdir`, `fs_rmfile`, `fs_hashfile`). It waits with
inter-character timeouts and blocking reads, so it runs here on a `DeadlinePort`: every read it
makes ends at fl-hil's deadline (a read past it raises, and the caller gets a BoardError naming the
board and what was awaited). fl-hil keeps its own code where mpremote lacks something: opening the
port (mpremote's "failed to access" drops the reason, e.g. a port busy in another program), the
raw REPL prompt hunt through garbage with a deadline, streaming a running node's output line by
line with one deadline and reset detection, secret redaction, and the board log."""
import time

from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport


class DeadlinePassed(Exception):
    """Raised inside mpremote when fl-hil's deadline for the operation has passed."""


class DeadlinePort:
    """A pyserial-like port for mpremote: reads end at `deadline`, and bytes fl-hil read ahead go
    back in front (`unread`), so both can read from one port."""

    def __init__(self, port):
        self.port = port
        self.deadline = None
        self._ahead = bytearray()

    def unread(self, data):
        self._ahead[:0] = data

    def _check(self):
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlinePassed()

    def inWaiting(self):  # noqa: N802 - mpremote calls pyserial's old name
        self._check()
        if self._ahead:
            return len(self._ahead)
        return getattr(self.port, "in_waiting", 0) or 0

    in_waiting = property(inWaiting)

    def read(self, n=1):
        self._check()
        out = bytearray()
        while len(out) < n:
            if self._ahead:
                take = self._ahead[: n - len(out)]
                del self._ahead[: len(take)]
                out += take
                continue
            data = self.port.read(n - len(out))
            if data:
                out += data
            elif self.deadline is None or time.monotonic() >= self.deadline:
                break
        return bytes(out)

    def write(self, data):
        n = self.port.write(data)
        flush = getattr(self.port, "flush", None)
        if flush:
            flush()
        return n


def transport_on(port, name):
    """An mpremote SerialTransport on an open port (mpremote would open the device itself)."""
    t = SerialTransport.__new__(SerialTransport)
    t.serial = port
    t.in_raw_repl = True
    t.use_raw_paste = True
    t.device_name = name
    t.mounted = False
    # mpremote then reads byte by byte without polling in_waiting and sleeping 10 ms between polls;
    # each read waits at most the port's timeout, and raises once fl-hil's deadline has passed
    t.is_pty = True
    return t


__all__ = ["DeadlinePassed", "DeadlinePort", "TransportError", "TransportExecError", "transport_on"]
