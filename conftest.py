"""fl-hil's pytest plugin comes in through its `pytest11` entry point once fl-hil is installed
(`pip install -e '.[dev]'`, or tox); this file only says so when it is not."""
from importlib.metadata import entry_points

import pytest

if not any(ep.value == "flhil.fixtures.plugin" for ep in entry_points(group="pytest11")):
    raise pytest.UsageError("fl-hil is not installed in this environment: run `pip install -e '.[dev]'` "
                            "(or use tox, which installs it)")
