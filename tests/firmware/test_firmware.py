"""The firmware tests under pytest.

The test logic lives in plain modules `tests/firmware/fw_*.py` that run on CPython and on
MicroPython alike. Here every `test_*` function of those modules is one pytest test on CPython, and
each module also runs as a whole under the MicroPython unix port
(`micropython -X heapsize=192k tests/firmware/mprun.py MODULE`), failing with the runner's output."""
import asyncio
import importlib
import inspect
import os
import shutil
import subprocess
import sys

import pytest

from flhil.harness import micropython_path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _p in (HERE,):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import fwkit  # noqa: E402  (needs the paths above)

# A board's heap, except where one process hosts a whole run: the oracle tests run up to 18 nodes
# in one interpreter and the fault tests 3 to 4, and how many frames sit in buffers at once depends
# on the host's load, so a per-board heap would fail them on a busy machine for reasons no board
# sees (a board runs one node in its 192 KB).
HEAP = {"fw_oracles": "1m", "fw_faults": "1m"}
MODULES = sorted(f[:-3] for f in os.listdir(HERE) if f.startswith("fw_") and f.endswith(".py"))
MICROPYTHON_TIMEOUT_S = 180


def _cases():
    cases = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in sorted(dir(module)):
            if attr.startswith("test_") and callable(getattr(module, attr)):
                cases.append(pytest.param(name, attr, id="%s.%s" % (name, attr)))
    return cases


@pytest.mark.parametrize("module,func", _cases())
def test_cpython(module, func):
    fn = getattr(importlib.import_module(module), func)
    try:
        if inspect.iscoroutinefunction(fn):
            asyncio.run(fn())
        else:
            fn()
    except fwkit.Skip as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("module", MODULES)
def test_micropython(module):
    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("the MicroPython unix port (`micropython`) is not on PATH")
    cmd = [exe, "-X", "heapsize=" + HEAP.get(module, "192k"), os.path.join(HERE, "mprun.py"), module]
    try:
        env = dict(os.environ, MICROPYPATH=micropython_path() + ":.frozen")
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=MICROPYTHON_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail("%s did not finish within %d s; output so far:\n%s" % (" ".join(cmd), MICROPYTHON_TIMEOUT_S, out))
    output = proc.stdout + proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    summary = lines[-1] if lines else ""
    if proc.returncode != 0 or not summary.endswith("skipped") or " 0 failed" not in summary:
        pytest.fail("%s exited with %d:\n%s" % (" ".join(cmd), proc.returncode, output))
    if " 0 passed" in " " + summary:
        pytest.fail("no test ran under MicroPython:\n" + output)
