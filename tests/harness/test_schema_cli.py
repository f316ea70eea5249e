"""`fl-hil schema`: the JSON Schema an editor uses to complete and check scenario and lab files,
and the docs' key tables, generated from the same models that validate the files."""
import glob
import json
import os
import subprocess
import sys
import tomllib

import jsonschema
import pytest

from flhil.harness.cli import docs_block

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def schema(kind):
    out = subprocess.run([sys.executable, "-m", "flhil.harness", "schema", kind], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("kind, files", [("scenario", "scenarios/**/*.toml"), ("lab", "labs/*.toml")])
def test_every_shipped_file_passes_its_schema(kind, files):
    validator = jsonschema.Draft202012Validator(schema(kind))
    paths = sorted(glob.glob(os.path.join(ROOT, files), recursive=True))
    assert paths
    for path in paths:
        with open(path, "rb") as f:
            errors = [e.message for e in validator.iter_errors(tomllib.load(f))]
        assert not errors, (path, errors)


def test_the_schema_catches_what_the_loader_refuses():
    validator = jsonschema.Draft202012Validator(schema("scenario"))
    bad = {"algorithm": "centralised", "nodes": {"count": 1}, "expect": {"consensu": {}}}
    messages = " | ".join(e.message for e in validator.iter_errors(bad))
    assert "centralised" in messages and "consensu" in messages and "1 is less than" in messages
    lab = jsonschema.Draft202012Validator(schema("lab"))
    assert list(lab.iter_errors({"network": {"ssid": "x", "password_env": "P", "password": "p"}}))


@pytest.mark.parametrize("kind", ["scenario", "lab"])
def test_the_docs_key_tables_are_the_models(kind):
    with open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8") as f:
        text = f.read()
    assert docs_block(kind) in text, ("docs/design.md is out of date with the models: run "
                                      "`fl-hil schema %s --update docs/design.md`" % kind)
