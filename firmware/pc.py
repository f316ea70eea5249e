"""PC node: `python -m firmware.pc RUN_CONFIG.json` (CPython) or `micropython -m firmware.pc ...`."""
import sys

from flhil.entry import main

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m firmware.pc RUN_CONFIG.json")
        sys.exit(2)
    main(sys.argv[1])
