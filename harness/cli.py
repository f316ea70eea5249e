"""Command line: `python -m harness boards | emulate N`."""

import argparse
import signal
import sys
import threading


def cmd_boards(args):
    from harness.discovery import list_boards
    boards = list_boards()
    if not boards:
        print("no Raspberry Pi (USB vendor 0x2E8A) serial ports found")
        return 0
    for b in boards:
        print(f"{b.port}\t{b.serial_number or '-'}\t{b.description}")
    return 0


def cmd_emulate(args):
    from harness.boards.emulated import EmulatedLab
    lab = EmulatedLab(args.count, root=args.root, heap=args.heap, micropython=args.micropython,
                      ip_prefix=args.ip_prefix, autorun=not args.no_autorun)
    stop = threading.Event()
    # SIGTERM ends the wait like Ctrl-C does, so the boards are reaped either way.
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        lab.start(timeout=args.timeout)
        for b in lab:
            print(f"{b.name}\t{b.port}\t{b.address}\t{b.flash_dir}", flush=True)
        print("emulated boards ready; Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        lab.close()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m harness", description="fl-hil harness")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("boards", help="list attached Pico boards (USB vendor 0x2E8A)")
    p.set_defaults(func=cmd_boards)
    p = sub.add_parser("emulate", help="run N emulated Pico W boards until Ctrl-C")
    p.add_argument("count", type=int)
    p.add_argument("--heap", default="192k", help="MicroPython heap size (default 192k, like a Pico W)")
    p.add_argument("--micropython", default=None, help="unix port binary (default: micropython on PATH)")
    p.add_argument("--root", default=None, help="folder for the flash dirs (default: a temp dir)")
    p.add_argument("--ip-prefix", default="127.77.0.", help="board i gets <prefix><i+1>")
    p.add_argument("--no-autorun", action="store_true", help="do not run main.py at boot")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the boards to boot")
    p.set_defaults(func=cmd_emulate)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)
