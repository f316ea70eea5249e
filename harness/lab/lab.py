"""A provisioned lab: the nodes described by a lab file, ready to run specs on.

Real boards are locked (a lock file per board) so two workers or two runs never share one.
Emulated boards start on demand and are reused across runs; PC nodes are cheap and made per run.
Addresses are unique per process (`subnet_offset`), so pytest-xdist workers never collide."""
import fcntl
import ipaddress
import os
import socket
import tempfile
import time

from flhil.harness import FIRMWARE_DIR
from flhil.harness.lab.boards.pc import PcNode
from flhil.harness.run.spec import DEFAULT_PORT
from flhil.harness.errors import BoardError, HarnessError

LOCK_DIR = os.path.join(tempfile.gettempdir(), "flhil-locks")
# The heap the fl-hil runtime needs to boot: the node, its transport and an app imported from .mpy
# leave ~60 KB allocated on the unix port (64-bit objects); 96 KB leaves room for a small run.
MIN_RUNTIME_HEAP_KB = 96
WIFI_JOIN_S = 20.0  # a Pico W joins in 2-5 s; past this the join has failed


class LabError(HarnessError):
    pass


class BoardLock:
    """An exclusive lock on one real board, held for the life of the lab."""

    def __init__(self, key, timeout_s=30):
        os.makedirs(LOCK_DIR, exist_ok=True)
        self.path = os.path.join(LOCK_DIR, "".join(c if c.isalnum() else "_" for c in key) + ".lock")
        self._f = open(self.path, "w")
        end = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > end:
                    self._f.close()
                    raise LabError("board %s is in use by another run (lock %s)" % (key, self.path)) from None
                time.sleep(0.2)

    def release(self):
        if not self._f.closed:
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()


def reserve_subnet_blocks(subnet, count=2, first=1, limit=4000):
    """Reserve `count` consecutive /24 blocks above `subnet` for this lab, host-wide: a lock
    file per block, held while the lab lives, so concurrent sessions never bind the same
    addresses (xdist workers, a developer's run beside CI's, pytest inside pytest)."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    for offset in range(first, limit, count):
        f = open(os.path.join(LOCK_DIR, "subnet-%s-%d.lock" % (subnet.replace("/", "_"), offset)), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        return offset, f
    raise LabError("no free loopback block above %s (%d in use)" % (subnet, limit))


def free_ports(host, count):
    """`count` TCP ports free on `host` now (bound together, then released for the nodes)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, 0))
            except OSError as e:
                s.close()
                raise LabError("cannot listen on network.host_address %s: %s (is it an address of this "
                               "PC?)" % (host, e)) from None
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def subnet_hosts(subnet, offset):
    """Addresses of `subnet` moved `offset` /24 blocks up, inside 127.0.0.0/8."""
    net = ipaddress.ip_network(subnet, strict=False)
    base = ipaddress.ip_address(int(net.network_address) + offset * 256)
    if base not in ipaddress.ip_network("127.0.0.0/8"):
        raise LabError("subnet %s moved by %d leaves 127.0.0.0/8" % (subnet, offset))
    start = int(base)
    return (str(ipaddress.ip_address(start + k)) for k in range(1, 255))


class Lab:
    """A provisioned lab; `spec` is its LabConfig (the lab file). Use as a context manager; close()
    reaps everything."""

    def __init__(self, spec, workdir, subnet_offset=None):
        self.spec = spec
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self._subnet_lock = None
        if subnet_offset is None:
            subnet_offset, self._subnet_lock = reserve_subnet_blocks(spec.emulated.subnet)
        self._emu_addresses = subnet_hosts(spec.emulated.subnet, subnet_offset)
        self._subnet_offset = subnet_offset
        self.emulated = []
        self.real = []
        self._locks = []
        self.broken = {}  # board name -> the first error that made it unusable this session
        self._prepared = set()
        self._flash_image = None
        self._runs = 0

    # -- inventory ---------------------------------------------------------------------------
    @property
    def has_real_boards(self):
        return bool(self.spec.boards)

    def real_boards(self):
        """The lab's real boards, each locked (once) for the life of the lab."""
        if not self.real and self.spec.boards:
            from flhil.harness.lab.boards.serial_board import SerialBoard
            for b in self.spec.boards:
                board = SerialBoard.from_spec(b, log_dir=os.path.join(self.workdir, "boards"))
                self.real.append(board)
                try:
                    self._check_heap(b.name, b.heap_kb, "boards[].heap_kb")
                    self._locks.append(BoardLock(b.serial or b.port or b.url))
                except LabError as e:
                    self.broken[b.name] = str(e)
        return self.real

    def _check_heap(self, name, heap_kb, key):
        if heap_kb is not None and heap_kb < MIN_RUNTIME_HEAP_KB:
            raise LabError("board %s: %s = %d is too small to boot the fl-hil runtime; it needs at least "
                           "%d KB" % (name, key, heap_kb, MIN_RUNTIME_HEAP_KB))

    def provision(self, board):
        """Make a real board ready for runs, once: answer (power-cycled if it does not), firmware,
        heap, Wi-Fi with a deadline (its address is what its peers are told). A board that fails
        is broken for the lab's life: later runs that need it fail at once with this first error."""
        if board.name in self.broken:
            raise LabError(self.broken[board.name])
        if board.name in self._prepared:
            return board
        try:
            board.answer()
            board.prepare(self._firmware_files())
            have = board.heap_total_kb()
            if have < MIN_RUNTIME_HEAP_KB:
                raise LabError("board %s has a %d KB heap, too small to boot the fl-hil runtime; it needs "
                               "at least %d KB" % (board.name, have, MIN_RUNTIME_HEAP_KB))
            net = self.spec.network
            board.join_wifi(net.ssid, self.spec.wifi_password(), timeout=WIFI_JOIN_S)
        except HarnessError as e:
            board.close()  # the port is free again for whoever looks at the board next
            why = e.why if isinstance(e, BoardError) else str(e)
            prefix = "board %s: " % board.name
            why = why[len(prefix):] if why.startswith(prefix) else why
            self.broken[board.name] = "board %s is broken for this session: %s" % (board.name, why)
            raise LabError(self.broken[board.name]) from None
        self._prepared.add(board.name)
        return board

    def emulated_boards(self, count):
        """At least `count` emulated boards, started on demand and kept for later runs."""
        from flhil.harness.lab.boards.emulated import EmulatedBoard
        emu = self.spec.emulated
        started = []
        while len(self.emulated) < count:
            k = len(self.emulated)
            self._check_heap("emu%d" % k, emu.heap_kb, "emulated.heap_kb")
            board = EmulatedBoard("emu%d" % k, os.path.join(self.workdir, "flash", "emu%d" % k),
                                  address=next(self._emu_addresses), number=k, heap="%dk" % emu.heap_kb,
                                  micropython=emu.micropython, log_dir=os.path.join(self.workdir, "boards"),
                                  autorun=False)  # the harness starts every run; nothing runs at boot
            self.emulated.append(board)
            started.append(board.boot())
        for board in started:  # booted together, waited for together
            board.wait_ready()
        return self.emulated[:count]

    # -- runs --------------------------------------------------------------------------------
    def allocate(self, count, boards, hil, run_dir, app_files=None):
        """`boards` nodes on boards (real under hil, else emulated) and the rest as PC nodes;
        `app_files` ({remote: local}, a user's app) go onto the boards' flash with the firmware.

        Under hil the healthy boards go first; a run that needs more boards than are healthy fails
        at once with the broken ones' first errors. PC nodes of a lab with real boards listen on
        `network.host_address`, where the boards reach them."""
        boards = count if boards is None else min(boards, count)
        host = None
        if hil:
            real = self.real_boards()
            if len(real) < boards:
                raise LabError("the run needs %d boards, the lab has %d real ones" % (boards, len(real)))
            picked = []
            for board in sorted(real, key=lambda b: b.name in self.broken):
                if len(picked) == boards:
                    break
                if board.name in self.broken:
                    raise LabError(self.broken[board.name])
                try:
                    picked.append(self.provision(board))
                except LabError:
                    continue  # another healthy board may stand in
            if len(picked) < boards:
                raise LabError("; ".join(self.broken.values()))
            for board in picked:
                # a port of its own per run: the listener of the run before may outlive its Ctrl-C
                board.listen_port = DEFAULT_PORT + 1 + self._runs % 1000
            if count > boards and self.spec.network is not None:
                host = self.spec.network.host_address
        else:
            picked = list(self.emulated_boards(boards))
        self._deploy(picked, app_files)
        pcs = self._fresh_pc_nodes(count - boards, run_dir, host)
        for node in pcs:
            node.prepare(FIRMWARE_DIR)
        return picked + pcs

    def _deploy(self, boards, app_files):
        """The firmware, and a user's app when the run has one, on each board (the manifest makes
        a deploy of unchanged files cheap)."""
        bundle = tuple(sorted((k, str(v)) for k, v in (app_files or {}).items()))
        files = dict(self._firmware_files(), **(app_files or {}))
        for node in boards:
            provisioned = not bundle and node.name in self._prepared  # a real board has the firmware
            if (node.name, bundle) not in self._prepared and not provisioned:
                node.prepare(files)
                self._prepared.add((node.name, bundle))

    def _fresh_pc_nodes(self, count, run_dir, host=None):
        """PC nodes on loopback addresses of their own, or all on `host` (the address boards reach
        this PC at), each on a free port; the Wi-Fi password is kept out of their environment."""
        # the PC nodes of earlier runs are gone, so every run takes the PC block from its start
        addresses = subnet_hosts(self.spec.emulated.subnet, self._subnet_offset + 1)
        ports = free_ports(host, count) if host else [None] * count
        hidden = [self.spec.network.password_env] if self.spec.network is not None else []
        return [PcNode("pc%d" % k, host or next(addresses), self.spec.pc.interpreter,
                       workdir=os.path.join(run_dir, "pc%d" % k), micropython=self.spec.emulated.micropython,
                       port=ports[k], hidden_env=hidden)
                for k in range(count)]

    def _firmware_files(self):
        """The compiled flash image, built once per lab (mpy-cross results are cached by hash)."""
        if self._flash_image is None:
            from flhil.harness.lab.deploy import build_firmware
            self._flash_image = build_firmware(FIRMWARE_DIR)
        return self._flash_image

    def run_dir(self, name):
        self._runs += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
        return os.path.join(self.workdir, "runs", "%03d-%s" % (self._runs, safe))

    def secrets(self):
        """Strings that must never appear in logs or reports."""
        if self.spec.network is None:
            return []
        value = os.environ.get(self.spec.network.password_env)
        return [value] if value else []

    def close(self):
        for board in self.emulated + self.real:
            try:
                board.close()
            except Exception:
                pass
        self.emulated = []
        self.real = []
        for lock in self._locks:
            lock.release()
        self._locks = []
        if self._subnet_lock is not None:
            self._subnet_lock.close()  # closing the file releases its lock
            self._subnet_lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
