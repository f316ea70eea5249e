"""A serial port exported over RFC 2217 on loopback, like ser2net: pyserial's `PortManager` does the
protocol (telnet options, baud rate and modem-line requests), this module only moves bytes.

The exported device is resolved again whenever it goes away (`resolve()` is called per open), so
a board that re-enumerates after a reset stays reachable at the same URL."""
import socket
import threading
import time

import serial
import serial.rfc2217


class Rfc2217Exporter:
    """Serve the device `resolve()` names at rfc2217://host:port, one client at a time."""

    def __init__(self, name, resolve, host="127.0.0.1", port=0):
        self.name = name
        self.resolve = resolve
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)
        self.host, self.port = self._listener.getsockname()[:2]
        self.url = "rfc2217://%s:%d" % (self.host, self.port)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="rfc2217-%s" % name)

    def start(self):
        self._thread.start()
        return self

    def _serve(self):
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            try:
                self._session(conn)
            except Exception:  # noqa: BLE001 - one broken session must not end the export
                pass
            finally:
                conn.close()

    def _open(self, deadline):
        while not self._closing.is_set():
            try:
                return serial.Serial(self.resolve(), 115200, timeout=0.05)
            except (serial.SerialException, OSError, TypeError):
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.05)
        return None

    def _session(self, conn):
        conn.settimeout(0.05)
        # the raw REPL is many small round trips: Nagle's algorithm would hold each answer back
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ser = self._open(time.monotonic() + 10)
        if ser is None:
            return
        holder = {"ser": ser}
        manager = serial.rfc2217.PortManager(_LineState(holder), _Writer(conn))
        done = threading.Event()

        def to_client():
            while not done.is_set():
                try:
                    data = holder["ser"].read(holder["ser"].in_waiting or 1)
                except (serial.SerialException, OSError, TypeError):
                    # the board went away (a reset re-enumerates it): find it again
                    try:
                        holder["ser"].close()
                    except Exception:  # noqa: BLE001
                        pass
                    fresh = self._open(time.monotonic() + 20)
                    if fresh is None:
                        done.set()
                        return
                    holder["ser"] = fresh
                    continue
                if data:
                    try:
                        conn.sendall(b"".join(manager.escape(data)))
                    except OSError:
                        done.set()

        pump = threading.Thread(target=to_client, daemon=True, name="rfc2217-%s-out" % self.name)
        pump.start()
        try:
            while not done.is_set() and not self._closing.is_set():
                try:
                    data = conn.recv(4096)
                except (socket.timeout, TimeoutError):
                    continue
                except OSError:
                    break
                if not data:
                    break
                try:
                    holder["ser"].write(b"".join(manager.filter(data)))
                except (serial.SerialException, OSError, TypeError):
                    pass  # bytes sent while the board re-enumerates are lost, as on USB
        finally:
            done.set()
            pump.join(2)
            try:
                holder["ser"].close()
            except Exception:  # noqa: BLE001
                pass

    def close(self):
        self._closing.set()
        try:
            self._listener.close()
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(2)


class _Writer:
    """What PortManager writes its telnet answers to."""

    def __init__(self, conn):
        self.conn = conn

    def write(self, data):
        try:
            self.conn.sendall(data)
        except OSError:
            pass


class _LineState:
    """The port as PortManager sees it: a pseudo-terminal has no modem lines (reading them fails),
    so a board's USB CDC port is modelled: CTS, DSR and CD up, no ring; settings are passed on
    where the device takes them."""

    cts = dsr = cd = True
    ri = False

    def __init__(self, holder):
        object.__setattr__(self, "_holder", holder)

    def __getattr__(self, name):
        return getattr(self._holder["ser"], name)

    def __setattr__(self, name, value):
        try:
            setattr(self._holder["ser"], name, value)
        except (serial.SerialException, OSError, ValueError):
            pass
