"""What the plugin writes for Allure: one Allure test per pytest item (the history id comes from
every parameter that makes an item), plain parameter values, and the findings and the key plot in
the test's description, so a reader sees them without a click."""
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_allure_test_per_item_with_findings_in_the_description(tmp_path):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    shutil.copy(ROOT / "scenarios" / "getmeas" / "clean.toml", scenarios / "topologies.toml")
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    cmd = [sys.executable, "-m", "pytest", str(scenarios), "-c", str(ROOT / "pyproject.toml"),
           "--rootdir", str(tmp_path), "-m", "sim", "--backend", "virtual", "--flhil-seed", "2",
           "--flhil-seed", "5", "--alluredir", str(results), "-p", "no:cacheprovider",
           "--report-dir", str(tmp_path / "reports"), "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tests = [json.loads(Path(p).read_text()) for p in glob.glob(str(results / "*-result.json"))]
    assert len(tests) == 8  # 4 topologies x 2 seeds
    assert len({t["historyId"] for t in tests}) == 8
    for t in tests:
        params = {p["name"]: p["value"] for p in t["parameters"]}
        assert params["mode"] == "sim" and params["backend"] == "virtual"
        assert params["args.topology"] in ("ring", "star", "line", "complete")  # no repr quotes
        assert params["seed"] in ("2", "5") and params["seed"] in t["name"]  # the seed that ran
        html = t.get("descriptionHtml") or ""
        assert "checks, 0 failed" in html and "PASS oracle" in html and "data:image/png;base64," in html
