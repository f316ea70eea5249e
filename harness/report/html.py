"""The HTML test report: Allure Report 3, installed locally with npm, run offline.

    python -m harness.htmlreport allure-results [-o reports/allure-report] [--history FILE]

`allure-results` is what `pytest --alluredir allure-results` wrote. The report keeps a history
(`reports/history.jsonl` by default, see allurerc.mjs): every generation appends one line, so the
report shows trends and marks tests new, fixed or regressed against earlier runs. Open the report
through a web server (`npx allure open reports/allure-report` or
`python -m http.server -d reports/allure-report`); browsers refuse to load its data from file://.

Needs Node.js and `npm ci` in the repository root (package.json pins the `allure` package).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from flhil.harness import REPO
from flhil.harness.errors import HarnessError

ROOT = Path(REPO)
CONFIG = ROOT / "allurerc.mjs"
DEFAULT_OUTPUT = ROOT / "reports" / "allure-report"
DEFAULT_HISTORY = ROOT / "reports" / "history.jsonl"
GENERATE_TIMEOUT_S = 300
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Allure's report pages load Google Analytics (allure 3.18's awesome report ignores
# ALLURE_NO_ANALYTICS); an offline lab report must not phone home, so the tag is cut out.
_ANALYTICS = re.compile(r'\s*<script async src="https://www\.googletagmanager\.com/gtag/js[^"]*"></script>'
                        r'\s*<script>\s*window\.dataLayer[\s\S]*?</script>')


class ReportToolMissing(HarnessError):
    """Node.js or the locally installed Allure Report 3 is not available."""


def allure_bin(root=ROOT) -> Path:
    """The locally installed Allure 3 CLI (node_modules/.bin/allure); raises ReportToolMissing
    with what to run when it is absent."""
    root = Path(root)
    exe = root / "node_modules" / ".bin" / "allure"
    if not exe.exists():
        raise ReportToolMissing(
            "Allure Report 3 is not installed: %s is missing. Run `npm ci` in %s (needs Node.js >= 20; "
            "package.json pins the `allure` package)" % (exe, root))
    if shutil.which("node") is None:
        raise ReportToolMissing("Node.js (`node`) is not on PATH; the Allure CLI %s needs it" % exe)
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


def generate(results_dirs, output=None, history=None, config=CONFIG, name=None, root=ROOT,
             timeout=GENERATE_TIMEOUT_S, quiet=False) -> Path:
    """Generate the HTML report from one or more allure-results directories into `output`
    (default reports/allure-report), appending this run to the history file `history` (default
    reports/history.jsonl, or allurerc.mjs's `historyPath`). Returns the report directory."""
    if isinstance(results_dirs, (str, os.PathLike)):
        results_dirs = [results_dirs]
    exe = allure_bin(root)
    dirs = _check_results(results_dirs)
    out = Path(output).resolve() if output else DEFAULT_OUTPUT
    _clear_output(out)
    env = dict(os.environ, NO_COLOR="1", FORCE_COLOR="0")
    env.setdefault("ALLURE_NO_ANALYTICS", "true")  # honoured by some Allure plugins, see strip_analytics
    if history:
        history = Path(history).resolve()
        history.parent.mkdir(parents=True, exist_ok=True)
        env["FLHIL_ALLURE_HISTORY"] = str(history)
    elif "FLHIL_ALLURE_HISTORY" not in env:
        DEFAULT_HISTORY.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(exe), "generate", *[str(d.resolve()) for d in dirs], "-o", str(out),
           "--config", str(config)]
    if name:
        cmd += ["--report-name", name]
    try:
        proc = subprocess.run(cmd, cwd=str(root), env=env, capture_output=True, text=True,
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
    ap.add_argument("--name", default=None, help="report name (default: fl-hil)")
    args = ap.parse_args(argv)
    try:
        out = generate(args.results, args.output, history=args.history, name=args.name)
    except HarnessError as e:
        print("htmlreport: %s" % e, file=sys.stderr)
        return 2
    print("report: %s" % (out / "index.html"))
    print("view it through a web server: npx allure open %s   (or: python -m http.server -d %s)"
          % (out, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
