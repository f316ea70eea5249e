"""Runs firmware test modules under MicroPython or CPython, without pytest.

    micropython -X heapsize=192k tests/firmware/mprun.py fw_oracles [fw_faults ...] [-k substring]
    python tests/firmware/mprun.py fw_oracles

Every function named test_* of each module runs (coroutines on a fresh event loop); one line per
test, `PASS name` or `FAIL name: traceback`, then `P passed, F failed, S skipped` (a test raising an
exception named Skip is skipped: fwkit.need_heap). Exit code 1 on a failure."""
import sys

try:
    import asyncio
except ImportError:
    import uasyncio as asyncio


def _dirname(path):
    i = path.rfind("/")
    return "." if i < 0 else (path[:i] or "/")


def _absolute(path):
    if path.startswith("/"):
        return path
    import os
    cwd = os.getcwd()
    while path.startswith("./"):
        path = path[2:]
    return cwd if path in ("", ".") else cwd.rstrip("/") + "/" + path


HERE = _dirname(_absolute(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# the node runtime `flhil`: installed under CPython, on MICROPYPATH under MicroPython
from flhil.compat import MICROPYTHON, format_exception  # noqa: E402


def is_coroutine_function(fn):
    if MICROPYTHON:
        # a generator function's type differs from a plain function's
        return type(fn) is not type(_dirname)
    import inspect
    return inspect.iscoroutinefunction(fn)


def tests_of(module):
    names = [k for k in dir(module) if k.startswith("test_") and callable(getattr(module, k))]
    names.sort()
    return [(k, getattr(module, k)) for k in names]


def run_test(fn):
    if is_coroutine_function(fn):
        try:
            asyncio.run(fn())
        finally:
            if MICROPYTHON:
                asyncio.new_event_loop()  # forget tasks a failed test left behind
    else:
        fn()


def main(argv):
    mods = []
    pattern = None
    i = 0
    while i < len(argv):
        if argv[i] == "-k":
            pattern = argv[i + 1]
            i += 2
            continue
        mods.append(argv[i])
        i += 1
    passed = failed = skipped = 0
    for name in mods:
        if name.endswith(".py"):
            name = name[:-3]
        name = name.split("/")[-1]
        module = __import__(name)
        for tname, fn in tests_of(module):
            full = name + "." + tname
            if pattern is not None and pattern not in full:
                continue
            try:
                run_test(fn)
            except Exception as e:
                if type(e).__name__ == "Skip":
                    skipped += 1
                    print("SKIP %s: %s" % (full, e))
                    continue
                failed += 1
                print("FAIL %s: %s" % (full, format_exception(e)))
            else:
                passed += 1
                print("PASS " + full)
            try:
                import gc
                gc.collect()
            except ImportError:
                pass
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
