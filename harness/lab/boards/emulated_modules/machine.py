# Emulated Pico W `machine` (MicroPython side). Only what the firmware and tests use.
import sys

_ctl = None  # set by _flhil_boot: the supervisor's control directory (a host path)
_open = open  # the host's open: loaded before _flhil_os maps "/" to the flash directory


def _mark(what):
    if _ctl:
        with _open(_ctl + "/" + what, "w") as f:
            f.write("1")


def reset():
    # The supervisor sees the marker and restarts the interpreter as after power-up.
    _mark("hard_reset")
    sys.exit(0)


def soft_reset():
    sys.exit(0)


def freq(hz=None):
    return 125000000 if hz is None else None


def unique_id():
    return b"\xe6\x61\x40\x00\x00\x00\x00" + bytes([_board_no & 0xFF])


_board_no = 0


def idle():
    pass


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 4
    IRQ_FALLING = 8

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self._v = 0
        if value is not None:
            self._v = 1 if value else 0

    def init(self, mode=-1, pull=-1, value=None):
        if value is not None:
            self._v = 1 if value else 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0

    def on(self):
        self._v = 1

    def off(self):
        self._v = 0

    def toggle(self):
        self._v ^= 1

    def irq(self, *args, **kw):
        return None

    def __call__(self, v=None):
        return self.value(v)

    def __repr__(self):
        return "Pin(%r)" % (self.id,)
