"""A user's own algorithm, the way a user brings it: MPT-FLA scripts written in upstream's style
(only the import line changed), run standalone as upstream launches them (one process per node,
a trailing input() answered late) on CPython and MicroPython, then through fl-hil from a scenario
file in a folder of the user's own: in virtual time, on PC nodes, on emulated boards and mixed,
their final values equal to a sequential reference (reference.py) exactly (dyadic values)."""
import ast
import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flhil.harness import micropython_path
from flhil.harness.config.scenario import load_scenario
from flhil.harness.errors import ConfigError

HERE = Path(__file__).parent
APPS = HERE / "apps"
sys.path.insert(0, str(HERE))
import reference  # noqa: E402

# app: (algorithm, nodes, argv with placeholders, reference function, result line pattern)
CASES = {
    "central_script.py": ("centralized", 3, ["{nodes}", "{id}", "0", "localhost", "10"], "central",
                          r"final localData = (.*)"),
    "decentral_script.py": ("decentralized", 3, ["{nodes}", "{id}", "localhost", "3"], "decentral",
                            r"final localData = (.*)"),
    "odts_script.py": ("tdm", 4, ["{nodes}", "{id}", "1", "3", "localhost"], "odts", r"final state = (.*)"),
    "getmeas_script.py": ("getmeas", 4, ["{nodes}", "{id}", "localhost"], "getmeas", r"case peers .* got (.*)"),
    "fedmean_script.py": ("fedmean", 3, ["{nodes}", "{id}", "0", "localhost"], "fedmean",
                          r"final localData = (.*)"),
}
STANDALONE_TIMEOUT_S = 60
PORT_LOCK = "/tmp/flhil-standalone-ports.lock"  # upstream's fixed ports 6000+k: one run at a time


def _argv(template, nodes, node):
    return [a.replace("{nodes}", str(nodes)).replace("{id}", str(node)) for a in template]


def _expected(app):
    algorithm, nodes, argv, func, _ = CASES[app]
    return getattr(reference, func)(nodes, {"argv": argv})


def _interpreter(kind):
    if kind == "cpython":
        return [sys.executable, "-u"], dict(os.environ)
    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("the MicroPython unix port (`micropython`) is not on PATH")
    return [exe], dict(os.environ, MICROPYPATH=micropython_path() + ":.frozen")


def run_standalone(app, kind, nodes, argv, workdir, node_env=None):
    """Launch one process per node as upstream does; answer each one's trailing input() only
    once every node has printed its result. `node_env(k)`: more environment for node k.
    Returns [(exit code, output)] per node."""
    cmd, env = _interpreter(kind)
    env.pop("FLHIL_TELEMETRY", None)
    with open(PORT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        procs = [subprocess.Popen(cmd + [app] + _argv(argv, nodes, k), cwd=workdir, text=True,
                                  env=dict(env, **(node_env(k) if node_env else {})),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for k in range(nodes)]
        try:
            time.sleep(1.0)  # the apps end blocked in input(): answered late
            outs = [p.communicate("\n", timeout=STANDALONE_TIMEOUT_S)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    return [(p.returncode, out) for p, out in zip(procs, outs)]


def _values(outputs, pattern):
    found = []
    for code, out in outputs:
        matches = re.findall(pattern, out)
        assert code == 0 and matches, "exit %s, output:\n%s" % (code, out)
        found.append(ast.literal_eval(matches[-1].strip()))
    return found


@pytest.mark.parametrize("kind", ["cpython", "micropython"])
@pytest.mark.parametrize("app", sorted(CASES))
def test_upstream_style_app_runs_standalone_with_only_the_import_line_changed(app, kind, tmp_path):
    shutil.copy(APPS / app, tmp_path / app)
    algorithm, nodes, argv, _, pattern = CASES[app]
    outputs = run_standalone(app, kind, nodes, argv, tmp_path)
    assert _values(outputs, pattern) == _expected(app)
    for _, out in outputs:  # no telemetry, no shutdown tracebacks in the app's own output
        assert "@@flhil" not in out and "Traceback" not in out, out


def test_a_model_of_tens_of_kb_goes_in_one_message_standalone(tmp_path):
    shutil.copy(APPS / "nn_script.py", tmp_path / "nn_script.py")
    outputs = run_standalone("nn_script.py", "cpython", 3, ["{nodes}", "{id}", "0", "localhost", "4"], tmp_path)
    accuracies = _values(outputs, r"test accuracy (.*)")
    assert all(a > 0.25 for a in accuracies), accuracies  # ten classes: chance is 0.1


# ---------------------------------------------------------------- through the harness

SCENARIO = '''\
description = "{app} as its author wrote it, under fl-hil"
algorithm = "{algorithm}"
app = "{app}"
[nodes]
count = {nodes}
[args]
argv = {argv}
[params]
"nodes.boards" = {boards}
[expect]
oracle = "../reference.py:{func}"
all_return = true
'''


def write_user_project(folder, boards="[0, 1]"):
    """A folder of the user's own: the apps and their reference, one scenario file per app in
    its scenarios/ folder."""
    (folder / "scenarios").mkdir()
    for app in CASES:
        shutil.copy(APPS / app, folder / app)
        algorithm, nodes, argv, func, _ = CASES[app]
        text = SCENARIO.format(app="../" + app, algorithm=algorithm, nodes=nodes, func=func,
                               argv="[" + ", ".join('"%s"' % a for a in argv) + "]",
                               boards=boards.replace("N", str(nodes)))
        (folder / "scenarios" / (Path(app).stem + ".toml")).write_text(text)
    shutil.copy(HERE / "reference.py", folder / "reference.py")


def run_pytest(target, *extra, timeout=600):
    """`pytest TARGET -m sim` as the user runs it, from the user's folder."""
    folder = target if target.is_dir() else target.parent
    cmd = [sys.executable, "-m", "pytest", str(target), "-m", "sim", "-q", "-p", "no:cacheprovider",
           "--report-dir", str(folder / "reports")] + list(extra)
    return subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout)


def test_user_scenarios_pass_in_virtual_time(tmp_path):
    write_user_project(tmp_path, boards="[0]")
    proc = run_pytest(tmp_path, "--backend", "virtual")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "%d passed" % len(CASES) in proc.stdout, proc.stdout[-2000:]


def test_user_scenarios_pass_on_pc_nodes_emulated_boards_and_mixed(tmp_path):
    write_user_project(tmp_path, boards="[0, 1, N]")
    proc = run_pytest(tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "%d passed" % (3 * len(CASES)) in proc.stdout, proc.stdout[-2000:]


def test_a_user_app_under_loss_and_dropout_meets_the_harness_expectations(tmp_path):
    shutil.copy(APPS / "central_script.py", tmp_path / "central_script.py")
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "lossy.toml").write_text('''\
description = "the user's centralized averaging keeps its invariants with a lossy uplink and a dead client"
algorithm = "centralized"
app = "../central_script.py"
seeds = [1, 2]
[nodes]
count = 5
[args]
argv = ["{nodes}", "{id}", "0", "localhost", "6"]
iterations = 6
[timing]
round_ms = 300
recv_ms = 600
[faults]
[[faults.links]]
dst = 0
loss = 0.3
[[faults.dropouts]]
node = 4
at = 2
[expect]
protocol = true
faults_seen = ["loss", "crash"]
skipped_rounds = { max = 3 }
''')
    proc = run_pytest(tmp_path, "--backend", "virtual")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "2 passed" in proc.stdout


def test_the_app_path_finds_an_app_by_module_name(tmp_path):
    apps = tmp_path / "my_apps"
    apps.mkdir()
    shutil.copy(APPS / "fedmean_script.py", apps / "fedmean_script.py")
    shutil.copy(HERE / "reference.py", tmp_path / "reference.py")
    scenario = tmp_path / "fedmean.toml"  # named on the command line: collected wherever it is
    scenario.write_text(
        'algorithm = "fedmean"\napp = "fedmean_script"\n[nodes]\ncount = 3\n'
        '[args]\nargv = ["{nodes}", "{id}", "0", "localhost"]\n[expect]\noracle = "reference.py:fedmean"\n')
    proc = run_pytest(scenario, "--backend", "virtual", "--flhil-apps", str(apps))
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:]


# ---------------------------------------------------------------- a user's mistakes

def test_a_missing_app_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('algorithm = "centralized"\napp = "nowhere.py"\n[nodes]\ncount = 3\n')
    with pytest.raises(ConfigError) as e:
        load_scenario(path)
    assert "s.toml: app (line 2): app file not found: %s" % (tmp_path / "nowhere.py") in str(e.value)


def test_code_micropython_cannot_compile_fails_at_load_with_file_and_line(tmp_path):
    if shutil.which("mpy-cross") is None:
        pytest.skip("mpy-cross is not on PATH")
    app = tmp_path / "bad_app.py"
    # valid CPython, which MicroPython's compiler refuses (a walrus in a comprehension's iterable)
    app.write_text("ARGS = {}\n\n\nasync def run(node, args):\n    return [y for x in range(3) if (y := x)]\n"
                   "\n\ndef helper():\n    match 3:\n        case 3:\n            return 1\n")
    path = tmp_path / "s.toml"
    path.write_text('algorithm = "centralized"\napp = "bad_app.py"\n[nodes]\ncount = 3\n')
    with pytest.raises(ConfigError) as e:
        load_scenario(path)
    message = str(e.value)
    assert "MicroPython cannot compile %s" % app in message and re.search(r'line \d+', message), message


def test_oracle_true_on_a_user_app_is_a_config_error(tmp_path):
    shutil.copy(APPS / "fedmean_script.py", tmp_path / "fedmean_script.py")
    path = tmp_path / "s.toml"
    path.write_text('algorithm = "fedmean"\napp = "fedmean_script.py"\n[nodes]\ncount = 3\n[expect]\noracle = true\n')
    with pytest.raises(ConfigError) as e:
        load_scenario(path)
    assert "expect.oracle (line 6): app fedmean_script.py has no built-in reference" in str(e.value)


def test_an_app_that_raises_fails_the_run_with_its_error_and_the_others_results(tmp_path):
    from flhil.harness.run.spec import RunSpec
    from flhil.harness.run.virtual import run_virtual
    app = tmp_path / "raising.py"
    app.write_text('ARGS = {"iterations": 1}\n\n\nasync def run(node, args):\n'
                   '    if node.id == 2:\n        raise RuntimeError("client 2 has no data")\n'
                   '    return await node.fl_centralized(lambda p, m: sum(m) / len(m), lambda d, p, m: m, 1.0, None)\n')
    record = run_virtual(RunSpec(app=str(app), algorithm="centralized", nodes=3, timing={"round_ms": 200}))
    assert record.statuses()[2] == "error"
    assert "RuntimeError: client 2 has no data" in record.events(2, "error")[0]["msg"]
    assert record.statuses()[0] == "ok" and record.statuses()[1] == "ok"


def test_standalone_nodes_listen_on_their_own_address_and_announce_it(tmp_path):
    """Upstream's PC + board set-up: each node on its own host (here, its own loopback address)."""
    shutil.copy(APPS / "central_script.py", tmp_path / "central_script.py")
    outputs = run_standalone("central_script.py", "cpython", 3, ["{nodes}", "{id}", "0", "127.0.0.1", "2"], tmp_path,
                             node_env=lambda k: {"FLHIL_MY_IP": "127.0.0.%d" % (k + 1),
                                                 "FLHIL_TELEMETRY": str(tmp_path / ("tel%d" % k))})
    assert all(code == 0 for code, _ in outputs), outputs
    import json
    for k in range(3):
        events = [json.loads(line.split(" ", 1)[1]) for line in (tmp_path / ("tel%d" % k)).read_text().splitlines()]
        listen = [e["addr"] for e in events if e["ev"] == "listen"]
        assert listen == [["127.0.0.%d" % (k + 1), 6000 + k]], listen
        assert [e for e in events if e["ev"] == "ready"][0]["peers"] == 3


def test_an_oversize_send_fails_at_the_sender_with_node_phase_size_and_knob(tmp_path):
    from flhil.harness.run.spec import RunSpec
    from flhil.harness.run.virtual import run_virtual
    app = tmp_path / "big.py"
    app.write_text('ARGS = {"iterations": 1}\n\n\nasync def run(node, args):\n'
                   '    return await node.fl_centralized(lambda p, m: m[0], lambda d, p, m: [0.5] * 500, 1.0, None)\n')
    record = run_virtual(RunSpec(app=str(app), algorithm="centralized", nodes=2, max_frame_kb=2,
                                 timing={"round_ms": 200}))
    message = record.events(1, "error")[0]["msg"]
    assert message.startswith("FrameTooLarge: node 1: the cu message of step 0 is too large"), message
    assert "limit 2048 bytes" in message and "max_frame_kb" in message
