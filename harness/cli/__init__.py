"""The `fl-hil` command (also `python -m flhil.harness`): boards, emulate, run, sweep, replay,
search, report, lint."""

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
    """N emulated boards until Ctrl-C or SIGTERM; with --rack, twins of real boards and a lab file
    listing them (removed again when the rack stops)."""
    import os
    from flhil.harness.errors import HarnessError
    stop = threading.Event()
    # SIGTERM ends the wait like Ctrl-C does, so the boards are reaped either way.
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    if args.rack:
        from flhil.harness.lab.twins import TwinRack
        password = os.environ.get(args.password_env)
        generated = password is None
        if generated:
            import secrets
            password = secrets.token_urlsafe(12)
        misbehave = dict(item.split("=", 1) for item in args.misbehave or ())
        try:
            lab = TwinRack(args.count, password, ssid=args.ssid, password_env=args.password_env,
                           heap_kb=_heap_kb(args.heap), micropython=args.micropython, root=args.root,
                           misbehave=misbehave, rfc2217=not args.no_rfc2217, join_ms=args.join_ms)
        except HarnessError as e:
            print("fl-hil emulate: %s" % e, file=sys.stderr)
            return 2
    else:
        from flhil.harness.lab.boards.emulated import EmulatedRack
        lab = EmulatedRack(args.count, root=args.root, heap=args.heap, micropython=args.micropython,
                           ip_prefix=args.ip_prefix, autorun=not args.no_autorun)
    try:
        lab.start(timeout=args.timeout)
        for b in lab:
            print("\t".join(str(x) for x in (b.name, b.port, b.address, b.flash_dir, b.serial_number or "-")),
                  flush=True)
        if args.rack:
            lab.write_lab(args.rack, pc=args.pc)
            if generated:
                print("the twins' Wi-Fi password: export %s=%s" % (args.password_env, password), flush=True)
            print("twin rack ready: %s; Ctrl-C to stop" % args.rack, file=sys.stderr, flush=True)
        else:
            print("emulated boards ready; Ctrl-C to stop", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    except HarnessError as e:
        print("fl-hil emulate: %s" % e, file=sys.stderr)
        return 1
    finally:
        lab.close()
        if args.rack:
            try:
                os.unlink(args.rack)
            except FileNotFoundError:
                pass
    return 0


def _heap_kb(text):
    text = str(text).lower().rstrip("b")
    return int(text[:-1]) if text.endswith("k") else int(text) // 1024


def cmd_twin(args):
    """Power-cycle (or make misbehave) one twin of a running twin rack, by serial number."""
    from flhil.harness.errors import HarnessError
    from flhil.harness.lab.twins import send_command
    try:
        if args.action == "power":
            send_command(args.serial, "power")
        else:
            send_command(args.serial, "misbehave", args.kind or "none")
    except HarnessError as e:
        print("fl-hil twin: %s" % e, file=sys.stderr)
        return 1
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
            try:
                clean = []
                if pipeline.needs_clean_run(case.expect):
                    clean = [pipeline.execute(pipeline.clean_spec(spec), backend, name="clean-" + case.id)]
                judged = rerun.run_judged(spec, backend, case.expect, clean=clean, name=case.id)
            except HarnessError as e:
                print("ERROR %s  %s" % (case.id, e))
                failed += 1
                continue
            record, report = judged.record, judged.verdict
            stem = os.path.splitext(os.path.basename(scenario.path))[0]
            path = record.save(os.path.join(args.report_dir, "records", "%s-%s.json" % (stem, case.id)))
            outcome = report.outcome.upper()
            print("%s %s  %s  (record: %s)" % (outcome, case.id, report.summary().splitlines()[0], path))
            if not report.ok:  # an inconclusive case (host overloaded) is shown, but fails nothing
                failed += report.outcome == "fail"
                print(report.summary())
    return 1 if failed else 0


def cmd_sweep(args):
    """Run many scenario cases on an executor (local Ray by default), resumable, one report."""
    import functools
    from pathlib import Path
    from flhil.harness.config import lab as labfile
    from flhil.harness.errors import HarnessError
    from flhil.harness.lab.lab import Lab
    from flhil.harness.run import sweep
    from flhil.harness.run.executor import ExecutorUnavailable, InlineExecutor, make_executor

    def say(text):
        print(text, flush=True)
    lab_spec, lab_text = None, ""
    try:
        if args.backend == "realtime":
            if args.address:
                print("fl-hil sweep: --backend realtime runs on this host's lab (its boards and PC nodes); "
                      "a cluster's workers cannot reach them: leave out --address, or use --backend virtual",
                      file=sys.stderr)
                return 2
            lab_spec = labfile.load_lab(args.lab) if args.lab else labfile.default_emulated_lab(8)
            lab_text = Path(args.lab).read_text(encoding="utf-8") if args.lab else "default emulated lab"
        cases = sweep.plan(args.paths, seeds=args.seed, backend=args.backend, hil=args.hil, lab_text=lab_text,
                           timeout_s=args.case_timeout)
    except HarnessError as e:
        print(e, file=sys.stderr)
        return 2
    files = len({c.path for c in cases})
    say("%d cases from %d scenario file%s, backend %s -> %s" % (len(cases), files, "s" * (files != 1),
                                                               args.backend, args.out))
    signal.signal(signal.SIGTERM, _raise_interrupt)
    lab = None
    try:
        if args.backend == "realtime":
            # one lab, one case at a time: real-time cases on one host would compete for its cores
            lab = Lab(lab_spec, str(Path(args.out, "lab").resolve()))
            executor, fn = InlineExecutor(), functools.partial(sweep.run_case, lab=lab)
        else:
            executor, fn = functools.partial(make_executor, args.executor, args.jobs, args.address), sweep.run_case
        summary = sweep.run_sweep(cases, args.out, executor, rerun_failed=args.rerun_failed, fn=fn, say=say)
    except ExecutorUnavailable as e:
        print("fl-hil sweep: %s" % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the cases that finished are kept in %s; run the same command again to go on"
              % args.out, file=sys.stderr)
        return 130
    finally:
        if lab is not None:
            lab.close()
    for entry in summary.cases:
        if entry and entry["status"] != sweep.PASSED:
            print("%s %s[%s]: %s" % (entry["status"].upper(), entry["scenario"], entry["case"], entry["message"]))
    print("%d cases: %d passed, %d failed, %d broken (%d run now, %d already done)" % (
        summary.total, summary.passed, summary.failed, summary.broken, summary.ran, summary.skipped))
    print("allure results: %s" % summary.results_dir)
    if args.report:
        _sweep_report(summary, Path(args.out))
    return 0 if summary.ok else 1


def _raise_interrupt(*_):
    raise KeyboardInterrupt


def _sweep_report(summary, out):
    from flhil.harness.errors import HarnessError
    from flhil.harness.report import html
    try:
        report = html.generate([summary.results_dir], output=out / "report", history=out / "history.jsonl",
                               name="fl-hil sweep %s" % out, quiet=True)
    except HarnessError as e:
        print("no HTML report (%s); build it later: fl-hil report %s -o %s" % (e, summary.results_dir,
                                                                          out / "report"))
        return
    print("report: %s (view it: python -m http.server -d %s)" % (report / "index.html", report))


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


# subcommands whose own module parses their arguments
FORWARDED = {
    "search": ("flhil.harness.run.search", "search fault schedules that break an algorithm's expectations"),
    "report": ("flhil.harness.report.html", "build the offline HTML report from Allure results"),
    "lint": ("flhil.harness.cli.lint",
             "check that the firmware compiles for MicroPython and imports nothing from the host"),
}


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
    p.add_argument("--rack", metavar="FILE", default=None,
                   help="twins of real boards (USB serial numbers, Wi-Fi, re-enumeration on reset, power) "
                        "and a lab file FILE listing them as [[boards]]")
    p.add_argument("--pc", type=int, default=8, help="with --rack: [pc] count of the lab file (default 8)")
    p.add_argument("--ssid", default="fl-hil-twins", help="with --rack: the twins' Wi-Fi network")
    p.add_argument("--password-env", default="FLHIL_WIFI_PASSWORD",
                   help="with --rack: the variable holding the Wi-Fi password (one is made up if unset)")
    p.add_argument("--join-ms", type=int, default=0, help="with --rack: how long a Wi-Fi join takes")
    p.add_argument("--no-rfc2217", action="store_true", help="with --rack: no board exported over RFC 2217")
    p.add_argument("--misbehave", action="append", metavar="TWIN=KIND",
                   help="with --rack: garbage, silence, hang (until power-cycled), wifi-wrong-password "
                        "or wifi-slow, e.g. twin1=silence (repeatable)")
    p.set_defaults(func=cmd_emulate)
    p = sub.add_parser("twin", help="power-cycle a twin of a running twin rack (the lab's power command)")
    p.add_argument("action", choices=("power", "misbehave"))
    p.add_argument("serial", help="the twin's USB serial number")
    p.add_argument("kind", nargs="?", default=None, help="with misbehave: a kind, or none")
    p.set_defaults(func=cmd_twin)
    p = sub.add_parser("run", help="run a scenario file without pytest and check its expectations")
    p.add_argument("scenario")
    p.add_argument("--lab", default=None, help="lab file (default: 8 emulated boards and PC nodes)")
    p.add_argument("--hil", action="store_true", help="run the board nodes on the lab's real boards")
    p.add_argument("--seed", type=int, action="append", default=None,
                   help="run with this seed instead of the scenario's seeds (repeatable)")
    p.add_argument("--backend", choices=("realtime", "virtual"), default="realtime")
    p.add_argument("--report-dir", default="reports")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("sweep", help="run many scenario cases on Ray (or worker processes), resumable, one report")
    p.add_argument("paths", nargs="+", metavar="SCENARIO", help="scenario files, or directories of them")
    p.add_argument("-o", "--out", default="reports/sweep",
                   help="output directory: finished cases (kept: a rerun skips them), Allure results, report")
    p.add_argument("--seed", type=int, action="append", default=None,
                   help="run with this seed instead of the scenarios' seeds (repeatable)")
    p.add_argument("--backend", choices=("virtual", "realtime"), default="virtual",
                   help="virtual time (default), or real time on this host's lab, one case at a time")
    p.add_argument("--lab", default=None, help="lab file for --backend realtime (default: 8 emulated boards)")
    p.add_argument("--hil", action="store_true", help="with --backend realtime: the lab's real boards")
    p.add_argument("--executor", choices=("auto", "ray", "processes", "inline"), default="auto",
                   help="auto: Ray when installed, else worker processes on this host")
    p.add_argument("--address", default=None,
                   help="a Ray cluster: auto, host:port or ray://host:port (default: a local Ray)")
    p.add_argument("-j", "--jobs", type=int, default=None,
                   help="CPUs of a local Ray or worker processes (default 2); on a cluster, at most this many")
    p.add_argument("--case-timeout", type=float, default=300.0,
                   help="seconds of wall time a case may take; past it the case is broken with a hang report")
    p.add_argument("--rerun-failed", action="store_true", help="run failed cases again (passed ones stay done)")
    p.add_argument("--no-report", dest="report", action="store_false", help="do not build the HTML report")
    p.set_defaults(func=cmd_sweep)
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
    for name, (module, text) in FORWARDED.items():
        p = sub.add_parser(name, help=text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_forward(module))
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in FORWARDED:  # all the rest is theirs, options first too (argparse's
        # REMAINDER would not take a leading --option)
        import importlib
        return importlib.import_module(FORWARDED[argv[0]][0]).main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)
