"""The README's examples and commands, run as a reader would run them."""
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title):
    start = README.index("## " + title)
    end = README.find("\n## ", start + 3)
    return README[start:end if end > 0 else None]


def blocks(text, lang):
    return re.findall(r"```%s\n(.*?)```" % lang, text, re.S)


def commands(text):
    """The commands of the section's sh blocks, comments dropped."""
    out = []
    for block in blocks(text, "sh"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def test_the_scenario_example_is_the_file_it_names():
    text = section("Writing a scenario")
    name = re.search(r"Example, `(scenarios/[^`]+)`", text).group(1)
    assert blocks(text, "toml")[0] == (ROOT / name).read_text()


def test_the_python_example_runs_as_a_test(tmp_path):
    code = blocks(section("Writing a scenario"), "python")[0]
    (tmp_path / "test_example.py").write_text(code)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
                           "--report-dir", str(tmp_path / "reports")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:]


# ---------------------------------------------------------------- "Test your own algorithm"

def user_folder(tmp_path):
    """The section's files, where the section puts them."""
    text = section("Test your own algorithm")
    for code in blocks(text, "python"):
        first = code.splitlines()[0]
        match = re.match(r"# (\w+\.py)", first)
        if match:
            (tmp_path / match.group(1)).write_text(code)
    toml = blocks(text, "toml")[0]
    name = re.search(r"and `(scenarios/[^`]+)`", text).group(1)
    (tmp_path / "scenarios").mkdir()
    (tmp_path / name).write_text(toml)
    return text, tmp_path / name


def test_the_user_app_example_is_green_with_the_sections_commands(tmp_path):
    text, _ = user_folder(tmp_path)
    cmds = commands(text)
    assert cmds == ["pytest scenarios -m sim --backend virtual", "pytest scenarios -m sim"]
    for cmd in cmds:
        proc = subprocess.run(cmd.split() + ["-q", "-p", "no:cacheprovider"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 and "4 passed" in proc.stdout, (cmd, proc.stdout[-3000:])


def test_the_user_app_example_meets_its_reference_when_clean(tmp_path):
    _, scenario = user_folder(tmp_path)
    text = scenario.read_text().replace('"faults.links[0].loss" = [0.0, 0.2]', '"faults.links[0].loss" = [0.0]')
    scenario.write_text(text + 'oracle = "../reference.py:final"\n')
    proc = subprocess.run([sys.executable, "-m", "pytest", "scenarios", "-m", "sim", "--backend", "virtual", "-q",
                           "-p", "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout[-3000:]


def test_the_user_app_example_runs_standalone_as_the_section_says(tmp_path):
    user_folder(tmp_path)
    sys.path.insert(0, str(tmp_path))
    sys.modules.pop("reference", None)  # tests/userapps has a reference.py too, maybe imported in this worker
    try:
        import reference
        expected = reference.final(3, {})
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("reference", None)
    from userapps.test_user_apps import run_standalone  # upstream's fixed ports, one run at a time
    outputs = run_standalone("my_app.py", "cpython", 3, ["{nodes}", "{id}", "0", "localhost"], tmp_path)
    got = [float(re.findall(r"final localData = (.*)", out)[-1]) for code, out in outputs if code == 0]
    assert got == expected, outputs
