"""What must hold before any Flower process starts: flwr installed, in the tested range, its
commands present, and a directory that is a Flower app. Each failure is a `FlowerError` that says
what is wrong and what to do."""
import os
import shutil
import sys
import tomllib
from importlib import metadata

from flhil.harness.errors import HarnessError

TESTED = ((1, 20), (2, 0))   # flwr >= 1.20, < 2: the Message API, SuperLink/SuperNode deployment
COMMANDS = ("flower-superlink", "flower-supernode", "flwr")
INSTALL_HINT = 'install it with: pip install "fl-hil[flower]"'


class FlowerError(HarnessError):
    """A Flower run that cannot start (flwr missing or untested, not a Flower app)."""


def _version_tuple(text):
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def flwr_version():
    """The installed flwr's version, or None."""
    try:
        return metadata.version("flwr")
    except metadata.PackageNotFoundError:
        return None


def check_flwr(version=None):
    """The flwr version in use; FlowerError when flwr is missing or outside the tested range."""
    version = version if version is not None else flwr_version()
    if version is None:
        raise FlowerError("flwr (Flower) is not installed in this Python (%s); %s" % (sys.executable, INSTALL_HINT))
    v = _version_tuple(version)
    lo, hi = TESTED
    if not (lo <= v[:2] < hi):
        raise FlowerError("flwr %s is outside the range fl-hil is tested with (>= %d.%d, < %d.%d); %s"
                          % (version, lo[0], lo[1], hi[0], hi[1], INSTALL_HINT))
    return version


def command(name):
    """The path of a Flower command: next to this Python first (its venv), then on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    found = shutil.which(name)
    if found is None:
        raise FlowerError("flwr is installed but its command %s is not next to %s nor on PATH; "
                          "reinstall it: pip install --force-reinstall \"fl-hil[flower]\"" % (name, sys.executable))
    return found


class FlowerProject:
    """A Flower app directory: pyproject.toml with [tool.flwr.app] components serverapp and
    clientapp (module:attribute, each module a file of the project) and its run config."""

    def __init__(self, path, name, serverapp, clientapp, run_config):
        self.path, self.name = path, name
        self.serverapp, self.clientapp = serverapp, clientapp
        self.run_config = run_config

    def __repr__(self):
        return "FlowerProject(%r)" % self.path


def load_project(path):
    """The Flower project at `path`; FlowerError naming the file and key when it is not one."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise FlowerError("Flower project %s: no such directory" % path)
    pyproject = os.path.join(path, "pyproject.toml")
    if not os.path.isfile(pyproject):
        raise FlowerError("%s is not a Flower app: it has no pyproject.toml (create one with `flwr new`, "
                          "or see docs/flower.md)" % path)
    try:
        with open(pyproject, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise FlowerError("%s: not valid TOML: %s" % (pyproject, e)) from None
    app = doc.get("tool", {}).get("flwr", {}).get("app")
    if not isinstance(app, dict):
        raise FlowerError("%s is not a Flower app: it has no [tool.flwr.app] table (with [tool.flwr.app.components] "
                          "serverapp and clientapp)" % pyproject)
    components = app.get("components")
    if not isinstance(components, dict):
        raise FlowerError("%s: [tool.flwr.app.components] is missing: give serverapp = \"module:app\" and "
                          "clientapp = \"module:app\"" % pyproject)
    refs = {}
    for key in ("serverapp", "clientapp"):
        ref = components.get(key)
        if not isinstance(ref, str) or ":" not in ref:
            raise FlowerError("%s: tool.flwr.app.components.%s: expected \"module:attribute\", got %r"
                              % (pyproject, key, ref))
        module = ref.split(":", 1)[0]
        base = os.path.join(path, *module.split("."))
        if not (os.path.isfile(base + ".py") or os.path.isfile(os.path.join(base, "__init__.py"))):
            raise FlowerError("%s: tool.flwr.app.components.%s = %r: no module %s in %s"
                              % (pyproject, key, ref, module, path))
        refs[key] = ref
    config = app.get("config", {})
    if not isinstance(config, dict):
        raise FlowerError("%s: [tool.flwr.app.config] must be a table" % pyproject)
    name = doc.get("project", {}).get("name") or os.path.basename(path)
    return FlowerProject(path, name, refs["serverapp"], refs["clientapp"], _flatten(config))


def _flatten(config, prefix=""):
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flatten(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def check_run_config(project, overrides):
    """Overrides must name keys of the project's run config (flwr refuses others, later)."""
    for key, value in overrides.items():
        if key not in project.run_config:
            from flhil.harness.config.toml import suggestion
            raise FlowerError("run config key %r is not in %s's [tool.flwr.app.config]%s (it has: %s)"
                              % (key, project.name, suggestion(key, project.run_config) or "",
                                 ", ".join(sorted(project.run_config))))
        if type(value) is not type(project.run_config[key]) and not (
                isinstance(value, (int, float)) and isinstance(project.run_config[key], float)):
            raise FlowerError("run config %s: expected a %s like the project's (%r), got %r"
                              % (key, type(project.run_config[key]).__name__, project.run_config[key], value))


def preflight(project_path, overrides=None):
    """Every check before a Flower lab starts: flwr, its commands, the project; returns the project."""
    check_flwr()
    for name in COMMANDS:
        command(name)
    project = load_project(project_path)
    check_run_config(project, overrides or {})
    return project
