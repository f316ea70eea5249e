"""Bad input is a clear error before any Flower process starts: a directory that is not a Flower
app, flwr missing, a flwr outside the tested range, a run config key the project lacks."""
import pathlib

import pytest

from flhil.harness.flower import project as fp
from flhil.harness.lab import reaper

EXAMPLE = pathlib.Path(__file__).parents[2] / "examples" / "flower-digits"


@pytest.fixture
def no_processes(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a process was started: %r" % (a,))
    monkeypatch.setattr(reaper, "spawn", refuse)


def test_the_example_is_a_flower_app():
    p = fp.load_project(EXAMPLE)
    assert p.serverapp == "flower_digits.server_app:app" and p.run_config["num-server-rounds"] >= 1


@pytest.mark.parametrize("files, why", [
    ({}, "has no pyproject.toml"),
    ({"pyproject.toml": "[project]\nname = 'x'\n"}, "has no [tool.flwr.app] table"),
    ({"pyproject.toml": "[tool.flwr.app]\npublisher = 'x'\n"}, "[tool.flwr.app.components] is missing"),
    ({"pyproject.toml": "[tool.flwr.app.components]\nserverapp = 'app'\nclientapp = 'a:b'\n"},
     'expected "module:attribute"'),
    ({"pyproject.toml": "[tool.flwr.app.components]\nserverapp = 'srv:app'\nclientapp = 'cli:app'\n"},
     "no module srv"),
    ({"pyproject.toml": "[tool.flwr.app\n"}, "not valid TOML"),
])
def test_a_directory_that_is_not_a_flower_app(tmp_path, files, why, no_processes, monkeypatch):
    monkeypatch.setattr(fp, "check_flwr", lambda version=None: "1.42.0")
    monkeypatch.setattr(fp, "command", lambda name: "/bin/true")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(fp.FlowerError) as e:
        fp.preflight(tmp_path)
    assert why in str(e.value) and str(tmp_path) in str(e.value)


def test_a_missing_flwr_says_how_to_install_it(monkeypatch, no_processes):
    monkeypatch.setattr(fp, "flwr_version", lambda: None)
    with pytest.raises(fp.FlowerError, match=r"flwr \(Flower\) is not installed.*fl-hil\[flower\]"):
        fp.preflight(EXAMPLE)


@pytest.mark.parametrize("version", ["1.19.0", "2.0.0", "0.9"])
def test_a_flwr_outside_the_tested_range(version, no_processes):
    with pytest.raises(fp.FlowerError, match="outside the range fl-hil is tested with"):
        fp.check_flwr(version)


@pytest.mark.parametrize("version", ["1.20.0", "1.42.0", "1.99.1rc1"])
def test_flwr_versions_in_range(version):
    assert fp.check_flwr(version) == version


def test_a_run_config_key_the_project_lacks(monkeypatch, no_processes):
    monkeypatch.setattr(fp, "check_flwr", lambda version=None: "1.42.0")
    monkeypatch.setattr(fp, "command", lambda name: "/bin/true")
    with pytest.raises(fp.FlowerError, match="'num-server-round' is not in flower-digits.*did you mean"):
        fp.preflight(EXAMPLE, {"num-server-round": 2})
    with pytest.raises(fp.FlowerError, match="expected a int"):
        fp.preflight(EXAMPLE, {"num-server-rounds": "two"})


def test_the_backend_checks_before_any_process(tmp_path, no_processes, monkeypatch):
    from flhil.harness.flower.backend import FlowerBackend
    from flhil.harness.run import pipeline
    from flhil.harness.run.spec import RunSpec
    monkeypatch.setattr(fp, "flwr_version", lambda: "3.0.0")
    spec = RunSpec(algorithm="flower", nodes=3, flower={"project": str(EXAMPLE), "supernodes": 2})
    with pytest.raises(fp.FlowerError, match="outside the range"):
        pipeline.execute(spec, FlowerBackend(run_dirs=lambda name: str(tmp_path / name)))
