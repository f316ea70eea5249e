# Emulated Pico W `network` (MicroPython side): a WLAN that reports the board's own loopback
# address once connected, so the node binds to an IP that is distinct per board. A twin of a rack
# has an access point (`<control dir>/wifi.json`: ssid, password, join_ms): a wrong ssid or
# password fails the join as a Pico W does, and the join takes join_ms. Without one it connects at
# once.
import time

_open = open  # the host's open: loaded before _flhil_os maps "/" to the flash directory
_ctl = None  # set by _flhil_boot: the supervisor's control directory
STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_CONNECTING = 1
STAT_CONNECT_FAIL = -1
STAT_NO_AP_FOUND = -2
STAT_WRONG_PASSWORD = -3
STAT_GOT_IP = 3

_ip = "127.0.0.1"  # set by _flhil_boot
_hostname = "PicoW"


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    _hostname = name


def country(code=None):
    import rp2
    return rp2.country(code)


class WLAN:
    PM_NONE = 0x10
    PM_PERFORMANCE = 0xA11142
    PM_POWERSAVE = 0xA11C82

    def __init__(self, interface=STA_IF):
        self._if = interface
        self._active = False
        self._status = STAT_IDLE
        self._ssid = None
        self._cfg = {"pm": self.PM_POWERSAVE, "mac": b"\x28\xcd\xc1\x00\x00\x01",
                     "txpower": 31, "channel": 1, "hostname": _hostname}

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if not on:
            self._status = STAT_IDLE

    def connect(self, ssid=None, key=None, bssid=None):
        if not self._active:
            raise OSError("WLAN not active")
        self._ssid = ssid
        self._cfg["ssid"] = ssid
        ap = _access_point()
        if ap is None:
            self._status = STAT_GOT_IP
        elif ap.get("ssid") != ssid:
            self._status = STAT_NO_AP_FOUND
        elif ap.get("password") != key:
            self._status = STAT_WRONG_PASSWORD
        else:
            self._status = STAT_CONNECTING
            self._up_at = time.ticks_add(time.ticks_ms(), int(ap.get("join_ms", 0)))

    def _poll(self):
        if self._status == STAT_CONNECTING and time.ticks_diff(time.ticks_ms(), self._up_at) >= 0:
            self._status = STAT_GOT_IP

    def disconnect(self):
        self._status = STAT_IDLE

    def isconnected(self):
        self._poll()
        return self._active and self._status == STAT_GOT_IP

    def status(self, param=None):
        if param == "rssi":
            return -40
        self._poll()
        return self._status

    def ifconfig(self, conf=None):
        if conf is not None:
            return None
        if not self.isconnected():
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        return (_ip, "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def ipconfig(self, key):
        if key == "addr4":
            return self.ifconfig()[:2]
        raise ValueError(key)

    def config(self, *args, **kw):
        if args:
            return self._cfg.get(args[0])
        self._cfg.update(kw)

    def scan(self):
        return []


def _access_point():
    if not _ctl:
        return None
    try:
        with _open(_ctl + "/wifi.json") as f:
            import json
            return json.load(f)
    except OSError:
        return None
