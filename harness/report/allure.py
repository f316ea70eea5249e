"""Allure results of fl-hil runs, written without pytest: labels and parameters, attachments
(plots, fault timeline, timing table, findings, the record, node logs), the test's description
(findings and key plot), and the run-level metadata (`environment.properties`, `categories.json`,
`executor.json`). The pytest plugin hands these the allure module (allure-pytest); `fl-hil sweep`
hands them a stand-in that collects a case's test (`allure_results.Sink`).

Every text passes through `redact`, so secrets (Wi-Fi password, run key) never reach a report; the
Wi-Fi password is never even read here."""
import base64
import hashlib
import html
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from flhil.harness import FIRMWARE_DIR as FIRMWARE
from flhil.harness.config.faults import fault_kinds
from flhil.harness.config.scenario import format_param_value
from flhil.harness.report import plots
from flhil.harness.results.verdict import INCONCLUSIVE
from flhil.harness.secrets import redact

FIRMWARE_DIR = Path(FIRMWARE)
# failure categories (infrastructure, hang or deadline, divergence, timing) matched against the
# messages the harness produces; written as categories.json and read by the HTML report's config
CATEGORIES_FILE = Path(__file__).resolve().with_name("allure_categories.json")
MICROPYTHON_TIMEOUT_S = 5.0


class _Plain:
    """A parameter value Allure shows as it is (it quotes strings: 'ring')."""

    def __init__(self, value):
        self.text = value if isinstance(value, str) else format_param_value(value)

    def __repr__(self):
        return self.text


def label(spec, record, parameters=(), title=None, sink=None):
    """Labels (epic: algorithm, feature: fault kinds) and parameters. The parameters are every
    value that makes an item (mode, params combination, seed, backend, nodes): Allure's history id
    comes from them, so each pytest item is its own test in the report. `sink`: what receives
    them instead of the allure module (`fl-hil sweep` writes its results without pytest)."""
    if sink is None:
        return
    if title:
        sink.dynamic.title(title)
    sink.dynamic.epic(spec.algorithm or spec.app)
    for kind in fault_kinds(spec.faults):
        sink.dynamic.feature(kind)
    values = dict(parameters)
    values.setdefault("nodes", spec.nodes)
    values.setdefault("seed", spec.seed)
    values["backend"] = record.backend if record else "?"
    kinds = sorted(set(n.get("kind", "?") for n in record.data["nodes"].values())) if record else []
    values["board kinds"] = ",".join(kinds) or "none"
    for name, value in values.items():
        sink.dynamic.parameter(name, _Plain(value))


def attach_to_allure(record, verdict=None, logs=None, secrets=(), workdir=None, description=None,
                     target=None, sink=None) -> bool:
    """Attach plots (PNG), fault timeline (CSV), timing table, the findings, the run record
    (JSON) and per-node logs ({node: text or path}; default: the record's log paths), and write
    the test's description: the scenario's description, the findings and the convergence plot.
    Returns False without a sink. Secrets are redacted from every text."""
    if sink is None:
        return False
    secrets = list(secrets or ())
    kind = sink.attachment_type

    def text(body, name, atype):
        sink.attach(redact(body, secrets), name=name, attachment_type=atype)

    key_plot = None
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        shown = [("convergence", lambda r, p: plots.convergence_plot(r, p, target)), ("timing", plots.timing_plot)]
        if record.algorithm == "heterofl":
            shown.insert(0, ("accuracy", plots.accuracy_plot))
        for name, plot in shown:
            try:
                png = plot(record, Path(tmp) / (name + ".png"))
            except Exception as exc:  # noqa: BLE001 - a plot must never hide the test's own outcome
                text("plot failed: %r" % exc, name + " plot error", kind.TEXT)
                continue
            if key_plot is None:
                key_plot = png.read_bytes()
            sink.attach.file(str(png), name=name, attachment_type=kind.PNG)
    dynamic = getattr(sink, "dynamic", None)
    if dynamic is not None:
        dynamic.description_html(redact(description_html(description, verdict, key_plot), secrets))
    text(plots.fault_timeline_csv(record), "fault timeline", kind.CSV)
    text(plots.timing_table(record), "timing table", kind.TEXT)
    if verdict is not None:
        text(verdict.summary(), "findings", kind.TEXT)
    text(record.to_json(), "run record", kind.JSON)
    if logs is None:
        logs = {n: record.log_path(n) for n in record.node_ids() if record.log_path(n)}
    for node, log in sorted(logs.items(), key=lambda kv: str(kv[0])):
        try:
            body = plots.read_log(log)
        except OSError as exc:
            body = "log unreadable: %s" % exc
        text(body, "log node %s" % node, kind.TEXT)
    return True


def description_html(description, verdict, png):
    """The scenario's description, the findings (failures first) and the key plot, inline."""
    parts = []
    if description:
        parts.append("<p>%s</p>" % html.escape(description))
    if verdict is not None:
        head = "%d checks, %d failed" % (len(verdict.findings), len(verdict.failures))
        if verdict.inconclusive:
            head += "; " + INCONCLUSIVE
        rows = [str(f) for f in verdict.failures] + ["evidence: " + e for e in verdict.evidence] + \
            list(verdict.notes) + [str(f) for f in verdict.findings if f.ok]
        parts.append("<p><b>%s</b></p><pre>%s</pre>" % (head, html.escape("\n".join(rows))))
    if png:
        parts.append('<img alt="convergence" style="max-width:100%%" src="data:image/png;base64,%s"/>'
                     % base64.b64encode(png).decode())
    return "\n".join(parts)


# ------------------------------------------------------------------ the facts

def firmware_hash(root=FIRMWARE_DIR) -> str:
    """sha256 over firmware/**/*.py in sorted order: each file's relative path, a NUL, its bytes,
    a NUL. Equal hashes mean the same node code ran."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def micropython_version(binary=None, timeout=MICROPYTHON_TIMEOUT_S) -> str:
    """`sys.version` of the MicroPython unix port (`binary`, $FLHIL_MICROPYTHON or `micropython`),
    or why it could not be asked."""
    name = binary or os.environ.get("FLHIL_MICROPYTHON") or "micropython"
    exe = shutil.which(name)
    if exe is None:
        return "not found (%s)" % name
    try:
        proc = subprocess.run([exe, "-c", "import sys;print(sys.version)"], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "no answer within %gs (%s)" % (timeout, name)
    except OSError as e:
        return "not runnable (%s: %s)" % (name, e)
    out = proc.stdout.strip()
    if proc.returncode != 0 or not out:
        return "failed (%s, exit %s)" % (name, proc.returncode)
    return out.splitlines()[0]


def lab_summary(spec) -> dict:
    """Counts of the nodes a flhil.harness.config.lab.LabConfig declares, and its file. No network secrets."""
    return {
        "lab.file": spec.path or "(none: default emulated lab)",
        "lab.boards.real": len(spec.boards),
        "lab.boards.emulated": spec.emulated.count,
        "lab.pc_nodes": spec.pc.count,
        "lab.pc_interpreter": spec.pc.interpreter,
    }


def environment(options=None, lab_spec=None) -> dict:
    """The environment.properties entries, in order. `options`: how the session ran (backend,
    markers, seeds, lab file), as the plugin read them from pytest's options."""
    options = options or {}
    env = {"fl-hil.firmware.sha256": firmware_hash()}
    mp_binary = None
    if lab_spec is not None and lab_spec.emulated.count:
        mp_binary = lab_spec.emulated.micropython
    env["micropython.version"] = micropython_version(mp_binary)
    env["cpython.version"] = "%s (%s)" % (platform.python_version(), sys.executable)
    env["platform"] = platform.platform()
    if options.get("backend"):
        env["backend"] = options["backend"]
    if options.get("markers"):
        env["markers"] = options["markers"]
    if options.get("seeds"):
        env["seed"] = ",".join(str(s) for s in options["seeds"])
    if lab_spec is not None:
        env.update(lab_summary(lab_spec))
    elif options.get("lab"):
        env["lab.file"] = options["lab"] + " (unreadable)"
    return env


def categories() -> list:
    """The failure categories (Allure 2 `categories.json` form, also understood by Allure 3)."""
    return json.loads(CATEGORIES_FILE.read_text(encoding="utf-8"))


def executor() -> dict:
    """executor.json: the CI run when known (GitHub Actions, GitLab CI, Jenkins), else the host."""
    e = os.environ
    if e.get("GITHUB_RUN_ID"):
        url = "%s/%s/actions/runs/%s" % (e.get("GITHUB_SERVER_URL", "https://github.com"),
                                        e.get("GITHUB_REPOSITORY", ""), e["GITHUB_RUN_ID"])
        return {"name": "GitHub Actions", "type": "github", "buildName": "%s #%s" % (
            e.get("GITHUB_WORKFLOW", "run"), e.get("GITHUB_RUN_NUMBER", e["GITHUB_RUN_ID"])),
            "buildUrl": url, "buildOrder": _int(e.get("GITHUB_RUN_NUMBER"))}
    if e.get("CI_PIPELINE_ID"):
        return {"name": "GitLab CI", "type": "gitlab", "buildName": "pipeline %s" % e["CI_PIPELINE_ID"],
                "buildUrl": e.get("CI_PIPELINE_URL"), "buildOrder": _int(e.get("CI_PIPELINE_IID"))}
    if e.get("BUILD_URL") and e.get("JENKINS_URL"):
        return {"name": "Jenkins", "type": "jenkins", "buildName": e.get("BUILD_TAG", "build"),
                "buildUrl": e["BUILD_URL"], "buildOrder": _int(e.get("BUILD_NUMBER"))}
    return {"name": "fl-hil on %s" % socket.gethostname(), "type": "local",
            "buildName": "pytest on %s" % socket.gethostname()}


# ------------------------------------------------------------------ writing

def write_results_metadata(results_dir, options=None, lab_spec=None, secrets=()) -> list:
    """Write environment.properties, categories.json and executor.json into `results_dir`;
    returns the paths written."""
    results = Path(results_dir)
    results.mkdir(parents=True, exist_ok=True)
    env = environment(options, lab_spec)
    lines = ["# fl-hil test environment (written by flhil.harness.report.allure)"]
    lines += ["%s=%s" % (_prop_key(k), _prop_value(redact(str(v), secrets))) for k, v in env.items()]
    written = []
    path = results / "environment.properties"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    written.append(path)
    try:
        cats = categories()
    except (OSError, ValueError) as e:  # a broken install must not fail the test session
        sys.stderr.write("fl-hil: no Allure categories (%s: %s)\n" % (CATEGORIES_FILE, e))
    else:
        path = results / "categories.json"
        path.write_text(json.dumps(cats, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    path = results / "executor.json"
    info = {k: v for k, v in executor().items() if v is not None}
    path.write_text(redact(json.dumps(info, indent=2), secrets) + "\n", encoding="utf-8")
    written.append(path)
    return written


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _prop_key(key):
    return "".join("\\" + c if c in " :=#!" else c for c in key)


def _prop_value(value):
    """One line of a Java properties file (backslashes and line breaks escaped)."""
    value = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\" + value if value.startswith(" ") else value
