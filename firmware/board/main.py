"""fl-hil Pico W entry: LED, Wi-Fi, then run the node described by flhil_run.json.

LED: slow blink while Wi-Fi connects, on while the node runs, fast blink after an error (until
the harness resets the board). The Wi-Fi password comes from the run config's `wifi` object
(`ssid`, `password`, optional `country`) and is never printed. A `listen` host of "auto" becomes
the board's Wi-Fi address."""
import json
import sys

try:
    import asyncio
except ImportError:
    import uasyncio as asyncio

try:
    import machine
except ImportError:  # a PC: no LED
    machine = None
try:
    import network
except ImportError:  # a PC: no Wi-Fi to bring up, loopback only
    network = None
try:
    import rp2
except ImportError:
    rp2 = None

CONFIG_FILE = "flhil_run.json"
WIFI_TIMEOUT_MS = 20000
PM_NONE = 0xA11140  # Wi-Fi power saving off (with it on, ping latency reaches ~200 ms)

LED = None
if machine is not None:
    try:
        LED = machine.Pin("LED", machine.Pin.OUT)
    except (AttributeError, TypeError, ValueError):  # e.g. the unix port's machine has no Pin
        LED = None


def led(on):
    if LED is not None:
        LED.value(1 if on else 0)


def log(msg):
    print("flhil main: " + msg)


async def blink(period_ms, stop):
    """Toggle the LED every period_ms until stop() is true."""
    on = True
    while not stop():
        led(on)
        on = not on
        await asyncio.sleep(period_ms / 1000)


async def connect_wifi(wifi, timeout_ms=WIFI_TIMEOUT_MS):
    """Bring up the station interface; returns its IP address. OSError on failure or timeout."""
    if network is None:
        return "127.0.0.1"
    if rp2 is not None and hasattr(rp2, "country"):
        rp2.country(wifi.get("country") or "XX")
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    try:
        wlan.config(pm=PM_NONE)
    except (ValueError, OSError, TypeError):
        pass
    if not wlan.isconnected():
        log("connecting to Wi-Fi %r" % (wifi.get("ssid"),))
        wlan.connect(wifi.get("ssid"), wifi.get("password"))
        waited = 0
        while not wlan.isconnected():
            status = wlan.status()
            if status < 0 or waited >= timeout_ms:
                raise OSError("Wi-Fi connect failed (status %d after %d ms)" % (status, waited))
            await asyncio.sleep(0.1)
            waited += 100
    ip = wlan.ifconfig()[0]
    log("Wi-Fi up, address " + ip)
    return ip


async def start(path=CONFIG_FILE):
    """Run the node of the config file at `path`; returns the Node or None after an error."""
    state = {"connecting": True}
    blinker = asyncio.create_task(blink(500, lambda: not state["connecting"]))
    try:
        with open(path) as f:
            cfg = json.load(f)
        wifi = cfg.get("wifi") or {}
        listen = cfg.get("listen")
        auto = listen is not None and listen[0] == "auto"
        if wifi.get("ssid") or auto:
            ip = await connect_wifi(wifi)
            if auto:
                cfg["listen"] = [ip, listen[1]]
        state["connecting"] = False
        await asyncio.sleep(0)  # let the blinker stop before the LED goes on
        led(True)
        import flhil.entry
        node = await flhil.entry.run_node(cfg)
        led(False)
        if node.status not in ("ok", "crashed"):
            raise RuntimeError("node ended with status " + node.status)
        return node
    except Exception as e:  # shown on the serial console and on the LED
        state["connecting"] = False
        log("error: %s: %s" % (type(e).__name__, e))
        if hasattr(sys, "print_exception"):
            sys.print_exception(e)
        return None
    finally:
        state["connecting"] = False
        blinker.cancel()


async def main_async(path=CONFIG_FILE):
    node = await start(path)
    if node is None:
        await blink(100, lambda: False)  # fast blink until the harness resets the board


def has_config(path=CONFIG_FILE):
    try:
        open(path).close()
        return True
    except OSError:
        return False


def main(path=CONFIG_FILE):
    # At power-up without a run config (the harness removes it after each run) there is nothing
    # to run: the board stays at its REPL, where the harness finds it.
    if not has_config(path):
        log("no %s: nothing to run" % path)
        return
    asyncio.run(main_async(path))


# The board runs main.py as __main__ (`import main` at its REPL starts it too); imported under any
# other name (a test, `flhil.board.main` on a PC) it only defines the functions.
if __name__ in ("__main__", "main"):
    main()
