"""fl-hil node firmware: runs unchanged on MicroPython (Pico W, unix port) and CPython."""
