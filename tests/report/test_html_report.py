"""The HTML report as a user sees it: pytest writes Allure results for two small scenario files,
`fl-hil report` builds the report twice (two runs sharing one history file), and
headless Chromium renders it from a local web server.

Run 1: `clean` (a copy of scenarios/centralized/clean.toml) passes, `lossy` fails on its oracle
(category Divergence).
Run 2: `lossy` is fixed, `clean` regresses on an impossible round-latency bound (category Timing).

Needs Node.js and npm (the pinned Allure Report 3 installs on first use) and Chromium (`chromium`
on PATH or $FLHIL_CHROMIUM);
without them the test skips and says why, unless FLHIL_REQUIRE_REPORT_TOOLS=1 (CI), where it fails.
"""
from __future__ import annotations

import html.parser
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from flhil.harness.report import html as htmlreport

ROOT = Path(__file__).resolve().parents[2]
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars"]
RENDER_BUDGET_MS = 10000

LOSSY = """\
name = "centralized averaging, 30% loss towards the server"
algorithm = "centralized"
description = "Report test: loss changes the values, so the oracle must fail in run 1."
seeds = [1]

[nodes]
count = 4
boards = 2

[args]
iterations = 6

[timing]
round_ms = 400
recv_ms = 800

[[faults.links]]
src = "*"
dst = 0
loss = 0.3

[expect]
EXPECT
"""

LOSSY_NAME = "centralized averaging, 30% loss towards the server sim[seed=1]"  # title: scenario name + item
SLOW = "round_ms = { p95_max = 0.0001 }  # impossible: makes run 2 regress\n"


def _chromium():
    for name in (os.environ.get("FLHIL_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _missing_tools():
    missing = []
    try:
        htmlreport.allure_bin()  # installs the pinned Allure Report 3 on first use
    except htmlreport.ReportToolMissing as e:
        missing.append(str(e))
    if _chromium() is None:
        missing.append("Chromium (`apt-get install -y chromium`, or set $FLHIL_CHROMIUM)")
    return missing


@pytest.fixture(scope="module")
def tools():
    missing = _missing_tools()
    if missing:
        reason = "HTML report test needs: " + "; ".join(missing)
        print(reason, file=sys.stderr)
        if os.environ.get("FLHIL_REQUIRE_REPORT_TOOLS"):
            pytest.fail(reason + " (FLHIL_REQUIRE_REPORT_TOOLS is set)", pytrace=False)
        pytest.skip(reason)
    return _chromium()


# ------------------------------------------------------------------ running things like a user

def _env():
    env = dict(os.environ)
    for key in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"):
        env.pop(key, None)
    return env


def _plugin_args():
    """Load fl-hil's plugin: by its entry point when installed, else by module (the scenarios live
    outside the checkout, so its conftest.py does not apply)."""
    installed = any(ep.value == "flhil.fixtures.plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "flhil.fixtures.plugin"]


def _pytest(work, results):
    cmd = [sys.executable, "-m", "pytest", str(work / "scenarios"), "-c", str(ROOT / "pyproject.toml"),
           "--rootdir", str(work), *_plugin_args(), "-m", "sim", "--backend", "virtual",
           "--alluredir", str(results), "-p", "no:cacheprovider", "--report-dir", str(work / "reports"),
           "-q", "-p", "no:randomly"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    # 1: some scenario failed on purpose; anything else is an error of the harness or the plugin.
    assert proc.returncode in (0, 1), "pytest failed to run:\n%s\n%s" % (proc.stdout, proc.stderr)
    return proc


def _htmlreport(results, report, history):
    cmd = [sys.executable, "-m", "flhil.harness", "report", str(results), "-o", str(report),
           "--history", str(history)]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, "htmlreport failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    assert (report / "index.html").is_file()
    return proc


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """`python -m http.server` on 127.0.0.1 serving `directory`; always stopped on exit."""

    def __init__(self, directory):
        self.directory = directory
        self.proc = None

    def __enter__(self):
        for _ in range(5):  # another process may grab the free port before the server binds it
            port = _free_port()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                 "--directory", str(self.directory)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            self.url = "http://127.0.0.1:%d" % port
            end = time.monotonic() + 10
            while time.monotonic() < end and self.proc.poll() is None:
                try:
                    urllib.request.urlopen(self.url + "/", timeout=1).close()
                    return self
                except OSError:
                    time.sleep(0.1)
            self._stop()
        raise RuntimeError("could not start a web server for %s" % self.directory)

    def _stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __exit__(self, *exc):
        self._stop()


class _Browser:
    def __init__(self, exe, work):
        self.exe = exe
        self.work = work
        self.runs = 0

    def _run(self, *args):
        self.runs += 1
        profile = self.work / ("chrome-profile-%d" % self.runs)  # a new empty profile each time
        profile.mkdir()
        cmd = [self.exe, *CHROME_FLAGS, "--user-data-dir=%s" % profile,
               "--virtual-time-budget=%d" % RENDER_BUDGET_MS, *args]
        proc = subprocess.run(cmd, capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, "chromium failed: %s\n%s" % (cmd, proc.stderr.decode(errors="replace")[-2000:])
        return proc

    def text(self, url):
        """The rendered page's visible text (scripts and styles removed), one string."""
        dom = self._run("--dump-dom", url).stdout.decode("utf-8", errors="replace")
        parser = _TextParser()
        parser.feed(dom)
        return " | ".join(parser.parts)

    def screenshot(self, url, png):
        self._run("--screenshot=%s" % png, "--window-size=1400,1000", url)
        assert png.is_file(), "chromium wrote no screenshot"
        return png


class _TextParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.skip = 0
        self.parts = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)

    def handle_data(self, data):
        if not self.skip and data.strip():
            self.parts.append(data.strip())


# ------------------------------------------------------------------ reading the report's data

def _results(report):
    """{test name: test result} of a generated report (several items may share a name)."""
    out = {}
    for path in sorted((report / "data" / "test-results").glob("*.json")):
        tr = json.loads(path.read_text(encoding="utf-8"))
        out.setdefault(tr["name"], []).append(tr)
    return out


def _by_suite(results, suite):
    return [tr for trs in results.values() for tr in trs
            if any(l.get("name") == "suite" and l.get("value") == suite for l in tr.get("labels", []))]


def _categories(tr):
    return {c.get("name") for c in tr.get("categories") or []}


def _attachments(tr):
    """Attachment links of a test result, from the report's step tree."""
    found = []

    def walk(items):
        for item in items or ():
            if item.get("type") == "attachment":
                found.append(item["link"])
            walk(item.get("steps"))
    walk(tr.get("steps"))
    return found


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _check_screenshot(png):
    """A real, non-blank rendering: right size, many colours, not one colour almost everywhere."""
    import numpy as np
    from matplotlib import image

    pixels = image.imread(str(png))
    assert pixels.shape[0] >= 900 and pixels.shape[1] >= 1300, pixels.shape
    rgb = (pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    assert len(colours) > 50, "screenshot has only %d colours" % len(colours)
    assert counts.max() / counts.sum() < 0.95, "screenshot is almost one colour"


# ------------------------------------------------------------------ the test

def test_html_report_two_runs(tools, tmp_path):
    started = time.monotonic()
    work = tmp_path
    scenarios = work / "scenarios"
    scenarios.mkdir()
    clean = scenarios / "clean.toml"
    lossy = scenarios / "lossy.toml"
    shutil.copy(ROOT / "scenarios" / "centralized" / "clean.toml", clean)
    lossy.write_text(LOSSY.replace("EXPECT", "oracle = true\nall_return = true"), encoding="utf-8")
    history = work / "history.jsonl"

    # Run 1: clean passes, lossy diverges from the oracle.
    _pytest(work, work / "results1")
    for name in ("environment.properties", "categories.json", "executor.json"):
        assert (work / "results1" / name).is_file(), "the plugin wrote no %s" % name
    _htmlreport(work / "results1", work / "report1", history)
    r1 = _results(work / "report1")
    clean_names = {tr["name"] for tr in _by_suite(r1, "clean")}
    assert clean_names and LOSSY_NAME in r1, sorted(r1)
    assert all(name.startswith("centralized averaging without faults sim[") for name in clean_names), clean_names
    assert all(tr["status"] == "passed" for tr in _by_suite(r1, "clean"))
    [lossy1] = _by_suite(r1, "lossy")
    assert lossy1["status"] == "failed"
    assert "Divergence" in _categories(lossy1), lossy1.get("categories")

    # Run 2: lossy fixed (no oracle), clean regresses on an impossible round-latency bound.
    lossy.write_text(LOSSY.replace("EXPECT", "all_return = true"), encoding="utf-8")
    text = clean.read_text(encoding="utf-8")
    assert "\n[expect]\n" in text and "round_ms" not in text.split("\n[expect]\n", 1)[1], \
        "scenarios/centralized/clean.toml changed shape: the test adds a round_ms bound under [expect]"
    clean.write_text(text.replace("\n[expect]\n", "\n[expect]\n" + SLOW, 1), encoding="utf-8")
    _pytest(work, work / "results2")
    _htmlreport(work / "results2", work / "report2", history)
    report = work / "report2"

    # History persisted: one line per generated report, and the marks come from it.
    assert len([l for l in history.read_text(encoding="utf-8").splitlines() if l.strip()]) == 2
    r2 = _results(report)
    [lossy2] = _by_suite(r2, "lossy")
    assert (lossy2["status"], lossy2.get("transition")) == ("passed", "fixed")
    clean2 = _by_suite(r2, "clean")
    assert {tr["name"] for tr in clean2} == clean_names
    for tr in clean2:
        assert (tr["status"], tr.get("transition")) == ("failed", "regressed"), tr["name"]
        assert "Timing" in _categories(tr), tr.get("categories")
        assert len(tr.get("history") or []) >= 1, "no history entry for %s" % tr["name"]

    # Attachments: the plots are PNGs in the report's data, next to the run record and findings.
    links = _attachments(lossy2)
    names = {a.get("name") for a in links}
    assert {"convergence", "run record", "findings"} <= names, names
    pngs = [a for a in links if a.get("contentType") == "image/png"]
    assert pngs, "no PNG attachment"
    for a in pngs:
        path = report / "data" / "attachments" / (a["id"] + a["ext"])
        assert path.is_file() and _is_png(path), path
    env = json.loads((report / "widgets" / "allure_environment.json").read_text(encoding="utf-8"))
    assert "fl-hil.firmware.sha256" in {e["name"] for e in env}
    assert "googletagmanager" not in (report / "index.html").read_text(encoding="utf-8")

    # What a user sees in a browser. The report loads its data with fetch(), which file:// blocks,
    # so it is served over HTTP like `npx allure open` does.
    browser = _Browser(tools, work)
    with _Server(work) as server:
        base = server.url + "/report2/"
        overview = browser.text(base)
        for text in ("fl-hil", "Failed", "Passed", "clean", "lossy", *clean_names, "fl-hil.firmware.sha256"):
            assert text in overview, "%r not on the overview page: %s" % (text, overview[:2000])
        page = browser.text(base + "#/" + lossy2["id"])
        for text in (LOSSY_NAME, "Passed", "convergence", "image/png", "run record", "Parameters", "seed"):
            assert text in page, "%r not on the test page: %s" % (text, page[:2000])
        assert "Timing" in browser.text(base + "#/categories")
        assert "Divergence" in browser.text(server.url + "/report1/#/categories")
        charts = browser.text(base + "#/charts")
        assert "Status dynamics" in charts, charts[:2000]
        shot = browser.screenshot(base, work / "report.png")
    _check_screenshot(shot)
    keep = os.environ.get("FLHIL_REPORT_SCREENSHOT")
    if keep:  # for a look by eye, e.g. FLHIL_REPORT_SCREENSHOT=/tmp/report.png
        shutil.copy(shot, keep)
    print("HTML report test: %.1fs, report %s, screenshot %s" % (time.monotonic() - started, report, shot))


def test_a_failed_session_still_writes_its_report(tools, tmp_path):
    """`--html-report`: the report is built at the end of the session, red or green; the exit
    status stays the tests' own, and an old report in the folder is replaced, never left behind."""
    work = tmp_path
    (work / "scenarios").mkdir()
    (work / "scenarios" / "lossy.toml").write_text(LOSSY.replace("EXPECT", "oracle = true"), encoding="utf-8")
    report = work / "html"
    report.mkdir()
    (report / "index.html").write_text("an old green report")
    cmd = [sys.executable, "-m", "pytest", str(work / "scenarios"), "-c", str(ROOT / "pyproject.toml"),
           "--rootdir", str(work), *_plugin_args(), "-m", "sim", "--backend", "virtual",
           "--alluredir", str(work / "results"), "--html-report", str(report), "-p", "no:cacheprovider",
           "--report-dir", str(work / "reports"), "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "HTML report in" in proc.stdout
    index = (report / "index.html").read_text(encoding="utf-8")
    assert "an old green report" not in index and "<html" in index.lower()
    assert (work / "history.jsonl").is_file()
