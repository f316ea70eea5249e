import sys

from flhil.harness.cli import main

sys.exit(main())
