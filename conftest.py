"""Loads the fl-hil plugin from this checkout. When fl-hil is installed as a package, pytest loads
the same plugin through its `pytest11` entry point, and loading it twice would be an error."""
from importlib.metadata import entry_points


def _installed_as_entry_point():
    return any(ep.value == "fixtures.plugin" for ep in entry_points(group="pytest11"))


pytest_plugins = [] if _installed_as_entry_point() else ["fixtures.plugin"]
