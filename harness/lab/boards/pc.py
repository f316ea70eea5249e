"""PC node: the firmware as a subprocess under CPython or the MicroPython unix port."""
import json
import os
import queue
import sys
import threading
import time

from flhil.harness import micropython_path
from flhil.harness.lab import reaper
from flhil.harness.lab.boards.base import Board
from flhil.harness.errors import BoardError, HarnessError



class PcNode(Board):
    """A node as a process on this PC (CPython or the unix port), started per run."""

    kind = "pc"

    def __init__(self, name, address, interpreter="cpython", workdir=None, micropython="micropython",
                 heap_kb=None, port=None, hidden_env=()):
        self.name = name
        self.address = address
        self.listen_port = port  # None: the default port (every PC node has an address of its own)
        self.hidden_env = tuple(hidden_env)  # variables its process must not see (the Wi-Fi password)
        self.interpreter = interpreter
        self.micropython = micropython
        self.heap_kb = heap_kb
        self.workdir = workdir
        self.proc = None
        self._lines = None
        self._reader = None

    def prepare(self, firmware_dir=None):
        """PC nodes run the firmware from the source tree; check the interpreter exists."""
        if self.interpreter == "micropython":
            from flhil.harness.lab.boards.emulated import resolve_micropython
            try:
                self.micropython = resolve_micropython(self.micropython)
            except HarnessError as e:
                raise BoardError(self.name, str(e)) from None

    def _argv(self, cfg_path):
        if self.interpreter == "micropython":
            heap = ["-X", "heapsize=%dk" % self.heap_kb] if self.heap_kb else []
            return [self.micropython] + heap + ["-m", "flhil.pc", cfg_path]
        return [sys.executable, "-u", "-m", "flhil.pc", cfg_path]

    def start(self, run_config):
        os.makedirs(self.workdir, exist_ok=True)
        cfg_path = os.path.join(self.workdir, "flhil_run.json")
        with open(cfg_path, "w") as f:
            json.dump(run_config, f)
        env = dict(os.environ, MICROPYPATH=micropython_path() + ":.frozen", PYTHONHASHSEED="0")
        for name in self.hidden_env:
            env.pop(name, None)
        self.proc = reaper.spawn(self._argv(cfg_path), cwd=self.workdir, env=env, stdin=None,
                                 stdout=__import__("subprocess").PIPE,
                                 stderr=__import__("subprocess").STDOUT)
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True, name="pc-%s" % self.name)
        self._reader.start()

    def _pump(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self._lines.put(None)  # end of output

    def lines(self, deadline):
        """Lines the node prints until it exits; stops (without error) at the deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                line = self._lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                return
            yield line

    def exit_code(self):
        return None if self.proc is None else self.proc.poll()

    def stop(self):
        if self.proc is not None:
            reaper.kill(self.proc)

    def close(self):
        self.stop()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
