"""The `fl-hil` command (also `python -m flhil.harness`): boards, emulate, run, replay, search,
report, lint."""

import argparse
import signal
import sys
import threading


def cmd_boards(args):
    from flhil.harness.lab.discovery import list_boards
    boards = list_boards()
    if not boards:
        print("no Raspberry Pi (USB vendor 0x2E8A) serial ports found")
        return 0
    for b in boards:
        print(f"{b.port}\t{b.serial_number or '-'}\t{b.description}")
    return 0


def cmd_emulate(args):
    from flhil.harness.lab.boards.emulated import EmulatedLab
    lab = EmulatedLab(args.count, root=args.root, heap=args.heap, micropython=args.micropython,
                      ip_prefix=args.ip_prefix, autorun=not args.no_autorun)
    stop = threading.Event()
    # SIGTERM ends the wait like Ctrl-C does, so the boards are reaped either way.
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    try:
        lab.start(timeout=args.timeout)
        for b in lab:
            print(f"{b.name}\t{b.port}\t{b.address}\t{b.flash_dir}", flush=True)
        print("emulated boards ready; Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        lab.close()
    return 0


def cmd_run(args):
    """Run a scenario file without pytest: every case, a summary line each, exit 1 on failure."""
    import os
    from flhil.harness.config import lab as labfile
    from flhil.harness.config.scenario import load_scenario
    from flhil.harness.errors import HarnessError
    from flhil.harness.lab.lab import Lab
    from flhil.harness.run import pipeline, rerun
    from flhil.harness.run.backend import make_backend
    try:
        scenario = load_scenario(args.scenario)
        lab_spec = labfile.load_lab(args.lab) if args.lab else labfile.default_emulated_lab(8)
    except HarnessError as e:
        print(e, file=sys.stderr)
        return 2
    failed = 0
    workdir = os.path.abspath(os.path.join(args.report_dir, "cli-lab"))
    with Lab(lab_spec, workdir) as lab:
        for case in scenario.cases(seeds=args.seed):
            spec = pipeline.spec_for(case)
            if args.backend == "virtual":
                backend = make_backend("virtual", run_dirs=lab.run_dir)
            else:
                backend = make_backend("realtime", lab=lab, boards=case.nodes.boards, hil=args.hil)
            clean = []
            if pipeline.needs_clean_run(case.expect):
                clean = [pipeline.execute(pipeline.clean_spec(spec), backend, name="clean-" + case.id)]
            judged = rerun.run_judged(spec, backend, case.expect, clean=clean, name=case.id)
            record, report = judged.record, judged.verdict
            stem = os.path.splitext(os.path.basename(scenario.path))[0]
            path = record.save(os.path.join(args.report_dir, "records", "%s-%s.json" % (stem, case.id)))
            outcome = report.outcome.upper()
            print("%s %s  %s  (record: %s)" % (outcome, case.id, report.summary().splitlines()[0], path))
            if not report.ok:  # an inconclusive case (host overloaded) is shown, but fails nothing
                failed += report.outcome == "fail"
                print(report.summary())
    return 1 if failed else 0


def cmd_replay(args):
    from flhil.harness.run import replay as replay_cli
    return replay_cli.main([args.record] + (["--out", args.out] if args.out else []) +
                           (["--idle"] if args.idle else []))


SCHEMAS = {"scenario": ("flhil.harness.config.scenario", "ScenarioConfig", "fl-hil scenario file"),
           "lab": ("flhil.harness.config.lab", "LabFile", "fl-hil lab file")}
DOC_BEGIN = "<!-- generated: fl-hil schema %s --update FILE (do not edit by hand) -->"
DOC_END = "<!-- end of generated table -->"


def schema_model(name):
    import importlib
    module, cls, title = SCHEMAS[name]
    return getattr(importlib.import_module(module), cls), title


def docs_block(name):
    from flhil.harness.config.model import markdown_table
    return "%s\n%s%s" % (DOC_BEGIN % name, markdown_table(schema_model(name)[0]), DOC_END)


def update_docs(name, doc_path):
    """Rewrite the generated key table of `name` in a markdown file; True when it changed."""
    import re
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    pattern = re.compile(re.escape(DOC_BEGIN % name) + r".*?" + re.escape(DOC_END), re.S)
    if not pattern.search(text):
        raise SystemExit("%s has no generated table for %s: put the line %r where it goes"
                         % (doc_path, name, DOC_BEGIN % name))
    new = pattern.sub(lambda _m: docs_block(name), text)
    if new != text:
        with open(doc_path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


def cmd_schema(args):
    """Print the JSON Schema of a scenario or lab file (for an editor: a `#:schema FILE` line at
    the top of a TOML file), or its key table in markdown, or update the docs' table."""
    import json
    from flhil.harness.config.model import json_schema, markdown_table
    model, title = schema_model(args.kind)
    if args.update:
        changed = update_docs(args.kind, args.update)
        print("%s: %s" % (args.update, "updated" if changed else "up to date"))
    elif args.markdown:
        print(markdown_table(model), end="")
    else:
        print(json.dumps(json_schema(model, title), indent=2))
    return 0


def _forward(module, name="main"):
    """A subcommand whose arguments the named module's own parser reads."""
    def run(args):
        import importlib
        return getattr(importlib.import_module(module), name)(args.rest)
    return run


def build_parser():
    parser = argparse.ArgumentParser(prog="fl-hil", description="fl-hil: hardware-in-the-loop tests of FL algorithms")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("boards", help="list attached Pico boards (USB vendor 0x2E8A)")
    p.set_defaults(func=cmd_boards)
    p = sub.add_parser("emulate", help="run N emulated Pico W boards until Ctrl-C")
    p.add_argument("count", type=int)
    p.add_argument("--heap", default="192k", help="MicroPython heap size (default 192k, like a Pico W)")
    p.add_argument("--micropython", default=None, help="unix port binary (default: micropython on PATH)")
    p.add_argument("--root", default=None, help="folder for the flash dirs (default: a temp dir)")
    p.add_argument("--ip-prefix", default="127.77.0.", help="board i gets <prefix><i+1>")
    p.add_argument("--no-autorun", action="store_true", help="do not run main.py at boot")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the boards to boot")
    p.set_defaults(func=cmd_emulate)
    p = sub.add_parser("run", help="run a scenario file without pytest and check its expectations")
    p.add_argument("scenario")
    p.add_argument("--lab", default=None, help="lab file (default: 8 emulated boards and PC nodes)")
    p.add_argument("--hil", action="store_true", help="run the board nodes on the lab's real boards")
    p.add_argument("--seed", type=int, action="append", default=None,
                   help="run with this seed instead of the scenario's seeds (repeatable)")
    p.add_argument("--backend", choices=("realtime", "virtual"), default="realtime")
    p.add_argument("--report-dir", default="reports")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("replay", help="replay a run record in virtual time (its faults and its timing): "
                                      "says whether its verdict is reproduced, or the first divergence")
    p.add_argument("record")
    p.add_argument("--out", default=None, help="write the replay's record here")
    p.add_argument("--idle", action="store_true",
                   help="replay the injected faults only, as on an idle host (no late messages, no stalls)")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("schema", help="JSON Schema (or the key table) of scenario and lab files")
    p.add_argument("kind", choices=sorted(SCHEMAS))
    p.add_argument("--markdown", action="store_true", help="the key table, as in docs/design.md")
    p.add_argument("--update", metavar="DOC", help="rewrite the generated key table in this markdown file")
    p.set_defaults(func=cmd_schema)
    for name, module, text in (
            ("search", "flhil.harness.run.search", "search fault schedules that break an algorithm's expectations"),
            ("report", "flhil.harness.report.html", "build the offline HTML report from Allure results"),
            ("lint", "flhil.harness.cli.lint",
             "check that the firmware compiles for MicroPython and imports nothing from the host")):
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_forward(module))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)
