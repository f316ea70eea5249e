"""The few places where MicroPython and CPython differ, in one module."""
import sys

try:
    import asyncio
except ImportError:  # very old MicroPython
    import uasyncio as asyncio

MICROPYTHON = sys.implementation.name == "micropython"
TimeoutError = asyncio.TimeoutError

try:
    import gc
    _mem_free = gc.mem_free
    _mem_alloc = gc.mem_alloc
except (ImportError, AttributeError):
    gc = None
    _mem_free = None
    _mem_alloc = None


def mem_free():
    """Free heap bytes without a collection (garbage counts as used), or None on CPython."""
    return None if _mem_free is None else _mem_free()


def heap():
    """(free, total) bytes of the MicroPython heap after a collection, or (None, None) on CPython."""
    if _mem_free is None:
        return None, None
    gc.collect()
    free = _mem_free()
    return free, free + _mem_alloc()


try:  # CPU time of this process: CPython, and MicroPython's unix port (time.clock); a board has none
    from time import process_time as _cpu_s
except ImportError:
    try:
        from time import clock as _cpu_s
    except ImportError:
        _cpu_s = None


def cpu_us():
    """CPU time this process has used, in microseconds, or None where it cannot be known (a
    board, which shares its CPU with nothing else)."""
    if _cpu_s is None:
        return None
    return int(_cpu_s() * 1000000)


def format_exception(exc):
    if MICROPYTHON:
        import io
        buf = io.StringIO()
        sys.print_exception(exc, buf)
        return buf.getvalue()
    import traceback
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def is_number(x):
    # bool is not an int subclass on MicroPython, and not a metric anywhere
    return (type(x) is int or type(x) is float) and x is not True and x is not False


def version():
    if MICROPYTHON:
        return ".".join(str(p) for p in sys.implementation.version[:3])
    return sys.version.split()[0]
