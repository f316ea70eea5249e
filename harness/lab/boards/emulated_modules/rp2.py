# Emulated Pico W `rp2` (MicroPython side).
_country = "XX"


def country(code=None):
    global _country
    if code is None:
        return _country
    _country = code


def bootsel_button():
    return 0
