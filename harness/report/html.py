"""The HTML test report: Allure Report 3, run offline.

    fl-hil report allure-results [-o reports/allure-report] [--history FILE]

`allure-results` is what `pytest --alluredir allure-results` wrote (the plugin's `--html-report
DIR` runs this at the end of the session, failed or not). The report keeps a history
(`reports/history.jsonl` by default): every generation appends one line, so the report shows
trends and marks tests new, fixed or regressed against earlier runs. Open the report through a web
server (`python -m http.server -d reports/allure-report`); browsers refuse to load its data from
file://.

The Allure CLI is the npm package pinned in `allure/package-lock.json` beside this module; on first
use it is installed with `npm ci` into a cache folder of its own (needs Node.js >= 20 and the npm
registry once), so an installed fl-hil builds reports as a checkout does.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from flhil.harness.errors import HarnessError

TOOL_FILES = Path(__file__).resolve().with_name("allure")  # package.json, package-lock.json, allurerc.mjs
CATEGORIES = Path(__file__).resolve().with_name("allure_categories.json")
DEFAULT_OUTPUT = Path("reports") / "allure-report"
DEFAULT_HISTORY = Path("reports") / "history.jsonl"
GENERATE_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 600
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Allure's report pages load Google Analytics (allure 3.18's awesome report ignores
# ALLURE_NO_ANALYTICS); an offline lab report must not phone home, so the tag is cut out.
_ANALYTICS = re.compile(r'\s*<script async src="https://www\.googletagmanager\.com/gtag/js[^"]*"></script>'
                        r'\s*<script>\s*window\.dataLayer[\s\S]*?</script>')


class ReportToolMissing(HarnessError):
    """Node.js or Allure Report 3 is not available and cannot be installed."""


def tool_home() -> Path:
    """Where the pinned Allure CLI is installed: $FLHIL_ALLURE_HOME, else a cache folder named by
    the lock file's hash (a new pin installs beside the old one)."""
    if os.environ.get("FLHIL_ALLURE_HOME"):
        return Path(os.environ["FLHIL_ALLURE_HOME"])
    tag = hashlib.sha256((TOOL_FILES / "package-lock.json").read_bytes()).hexdigest()[:12]
    return Path.home() / ".cache" / "flhil" / ("allure-" + tag)


def allure_bin(install=True) -> Path:
    """The Allure 3 CLI, installed on first use (`npm ci` of the pinned package); raises
    ReportToolMissing with the fix when Node.js or npm is missing or the install fails."""
    if shutil.which("node") is None:
        raise ReportToolMissing("Node.js (`node`, version 20 or newer) is not on PATH; the HTML report "
                                "needs it (Debian: apt-get install nodejs npm)")
    home = tool_home()
    exe = home / "node_modules" / ".bin" / "allure"
    if exe.exists():
        return exe
    if not install:
        raise ReportToolMissing("Allure Report 3 is not installed in %s" % home)
    npm = shutil.which("npm")
    if npm is None:
        raise ReportToolMissing("npm is not on PATH: it installs the pinned Allure Report 3 once")
    home.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", "allurerc.mjs"):
        shutil.copyfile(TOOL_FILES / name, home / name)
    try:
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=home,
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ReportToolMissing("npm ci of Allure Report 3 in %s took over %ds" % (home, INSTALL_TIMEOUT_S)) from None
    if proc.returncode != 0 or not exe.exists():
        raise ReportToolMissing("npm ci of Allure Report 3 in %s failed (exit %s): %s"
                                % (home, proc.returncode, (proc.stderr or proc.stdout).strip()[-500:]))
    return exe


def _check_results(results_dirs):
    dirs = [Path(d) for d in results_dirs]
    if not dirs:
        raise HarnessError("no results directory given")
    for d in dirs:
        if not d.is_dir():
            raise HarnessError("results directory %s does not exist: run pytest with "
                               "--alluredir %s first" % (d, d))
    if not any(any(d.glob("*-result.json")) for d in dirs):
        raise HarnessError("no test results (*-result.json) in %s: did pytest run with --alluredir "
                           "and collect any test?" % ", ".join(map(str, dirs)))
    return dirs


def _clear_output(out: Path):
    """Remove an earlier report in `out`, but never a directory that does not look like one."""
    if not out.exists():
        return
    if not out.is_dir():
        raise HarnessError("report output %s exists and is not a directory" % out)
    entries = list(out.iterdir())
    if entries and not (out / "index.html").exists():
        raise HarnessError("report output %s is not empty and holds no earlier report (index.html); "
                           "choose another directory" % out)
    shutil.rmtree(out)


def default_name(results_dirs):
    """'fl-hil, <when>, <run>': the report says when it was made and from which run."""
    run = os.environ.get("GITHUB_RUN_ID") or os.environ.get("CI_PIPELINE_ID")
    if not run:
        newest = max((p.stat().st_mtime for d in results_dirs for p in Path(d).glob("*-result.json")),
                     default=time.time())
        run = "results of " + time.strftime("%Y-%m-%d %H:%M", time.localtime(newest))
    return "fl-hil, built %s, %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), run)


def generate(results_dirs, output=None, history=None, name=None, timeout=GENERATE_TIMEOUT_S,
             quiet=False) -> Path:
    """Generate the HTML report from one or more allure-results directories into `output`
    (default reports/allure-report), appending this run to the history file `history` (default
    reports/history.jsonl). Returns the report directory."""
    if isinstance(results_dirs, (str, os.PathLike)):
        results_dirs = [results_dirs]
    exe = allure_bin()
    dirs = _check_results(results_dirs)
    out = Path(output or DEFAULT_OUTPUT).resolve()
    _clear_output(out)
    history = Path(history or DEFAULT_HISTORY).resolve()
    history.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, NO_COLOR="1", FORCE_COLOR="0", FLHIL_ALLURE_HISTORY=str(history),
               FLHIL_ALLURE_OUTPUT=str(out), FLHIL_ALLURE_CATEGORIES=str(CATEGORIES))
    env.setdefault("ALLURE_NO_ANALYTICS", "true")  # honoured by some Allure plugins, see strip_analytics
    cmd = [str(exe), "generate", *[str(d.resolve()) for d in dirs], "-o", str(out),
           "--config", str(exe.parents[2] / "allurerc.mjs"), "--report-name", name or default_name(dirs)]
    try:
        proc = subprocess.run(cmd, cwd=str(exe.parents[2]), env=env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise HarnessError("allure generate did not finish within %ds: %s" % (timeout, " ".join(cmd))) from None
    output_text = _ANSI.sub("", (proc.stdout or "") + (proc.stderr or "")).strip()
    if proc.returncode != 0 or not (out / "index.html").exists():
        raise HarnessError("allure generate failed (exit %s): %s\n%s"
                           % (proc.returncode, " ".join(cmd), output_text))
    strip_analytics(out)
    if output_text and not quiet:
        print(output_text)
    return out


def strip_analytics(report_dir) -> int:
    """Remove the Google Analytics tag from the report's HTML pages; returns how many were cut."""
    cut = 0
    for page in Path(report_dir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new, n = _ANALYTICS.subn("", text)
        if n:
            page.write_text(new, encoding="utf-8")
            cut += n
    return cut


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="fl-hil report",
        description="Build the HTML test report (Allure Report 3, offline) from pytest --alluredir results.")
    ap.add_argument("results", nargs="+", help="allure-results directory (or several, merged)")
    ap.add_argument("-o", "--output", default=None,
                    help="report directory (default: reports/allure-report); an earlier report there is replaced")
    ap.add_argument("--history", default=None,
                    help="history file, one JSON line per report (default: reports/history.jsonl); "
                         "keep it between runs for trends and new/fixed/regressed marks")
    ap.add_argument("--name", default=None, help="report name (default: fl-hil, when it was built, the run)")
    args = ap.parse_args(argv)
    try:
        out = generate(args.results, args.output, history=args.history, name=args.name)
    except HarnessError as e:
        print("fl-hil report: %s" % e, file=sys.stderr)
        return 2
    print("report: %s" % (out / "index.html"))
    print("view it through a web server: python -m http.server -d %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
