# Start-up of an emulated Pico W, run by the unix port with `-i` before its REPL.
# argv: flash dir, control dir, loopback IP, board number, mode ("friendly" runs main.py like a
# board after reset; "raw" is a soft reset from the raw REPL, which skips main.py).
def _flhil_boot():
    import sys
    import os
    shims = sys.argv[0].rsplit("/", 1)[0]
    flash, ctl, ip, num, mode = sys.argv[1:6]
    sys.path[:] = [shims]
    # imported now, while sys.path holds only the shims: the files shadow the unix port's built-ins
    import machine  # noqa: F401
    import network  # noqa: F401
    import rp2  # noqa: F401
    import _flhil_os
    _flhil_os.install(flash)
    del sys.modules["_flhil_os"]
    machine._ctl = ctl
    machine._board_no = int(num)
    network._ip = ip
    network._ctl = ctl
    sys.path[:] = [flash, flash + "/lib", ".frozen"]
    sys.argv[:] = []
    os.chdir(flash)
    import os
    names = ("boot.py", "main.py") if mode == "friendly" else ("boot.py",)
    for name in names:
        try:
            os.stat(name)
        except OSError:
            continue
        try:
            exec(open(name).read(), {"__name__": "__main__"})
        except KeyboardInterrupt:
            print("Traceback (most recent call last):\nKeyboardInterrupt: ")
        except SystemExit:
            raise
        except Exception as e:
            sys.print_exception(e)


_flhil_boot()
del _flhil_boot
