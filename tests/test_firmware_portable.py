"""firmware/ must run unchanged on MicroPython: it compiles with mpy-cross and imports nothing
from the host side."""
from flhil.harness.cli import lint as lint_firmware


def test_firmware_compiles_with_mpy_cross_and_imports_only_micropython_modules():
    assert lint_firmware.problems() == []


def test_the_check_catches_a_host_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\nfrom harness import lab\n")
    found = lint_firmware.import_problems(str(bad))
    assert len(found) == 2 and "numpy" in found[0] and "harness" in found[1]


def test_the_check_catches_syntax_micropython_cannot_compile(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n    pass\n")
    assert lint_firmware.compile_problems(str(bad), str(tmp_path))
