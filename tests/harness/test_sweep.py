"""`fl-hil sweep` as a user runs it: a directory of their own scenario files, virtual time, an
output directory. The sweep's verdicts and records are those of `fl-hil run` for the same files;
its Allure results hold one test per case; a second invocation runs nothing new; a failing case
gives exit 1 and its findings; Ctrl-C keeps what finished and leaves no Ray process behind.

Ray runs bounded: a local Ray of at most 2 CPUs, started and shut down by each sweep. Without Ray
installed the Ray cases skip and the fallback (worker processes) is tested the same way."""
from __future__ import annotations

import fcntl
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flhil.harness.run.executor import ProcessExecutor, ray_available

ROOT = Path(__file__).resolve().parents[2]
EXECUTORS = ["processes", pytest.param("ray", marks=pytest.mark.skipif(
    not ray_available(), reason="Ray is not installed (pip install 'fl-hil[sweep]'): the fallback is tested"))]

CLEAN = """\
name = "centralized averaging without faults"
algorithm = "centralized"
seeds = [1, 2]

[nodes]
count = 3

[args]
iterations = 4

[expect]
oracle = true
all_return = true
"""

LOSSY = """\
name = "decentralized averaging, half the messages to node 0 lost"
algorithm = "decentralized"
seeds = [4]

[nodes]
count = 4

[args]
iterations = 4

[[faults.links]]
src = "*"
dst = 0
loss = 0.5

[expect]
oracle = true
"""


def fl_hil(*args, timeout=240, **kwargs):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAY_ADDRESS"))}
    return subprocess.run([sys.executable, "-m", "flhil.harness", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture(autouse=True)
def one_ray_at_a_time(tmp_path_factory, request):
    """Ray tests of parallel workers (pytest -n) take turns: at most one local Ray of <= 2 CPUs."""
    if "ray" not in request.node.name:
        yield
        return
    with open(tmp_path_factory.getbasetemp().parent / "flhil-ray.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def scenarios(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "clean.toml").write_text(CLEAN)
    (d / "lossy.toml").write_text(LOSSY)
    return d


def run_verdicts(scenario_dir, tmp_path):
    """{(file, case id): (PASS/FAIL, checks line, trace hash)} from `fl-hil run --backend virtual`."""
    out = {}
    for path in sorted(scenario_dir.glob("*.toml")):
        reports = tmp_path / ("run-" + path.stem)
        proc = fl_hil("run", path, "--backend", "virtual", "--report-dir", reports)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        for verdict, case, checks, record in re.findall(r"^(PASS|FAIL) (\S+)  run \S+ (.*?)  \(record: (.*)\)$",
                                                        proc.stdout, re.M):
            trace = json.loads(Path(record).read_text())["trace_hash"]
            out[(path.name, case)] = (verdict, checks, trace)
    return out


def sweep_verdicts(out):
    summary = json.loads((out / "summary.json").read_text())
    found = {}
    for entry in summary["cases"]:
        v = entry["verdict"]
        failed = sum(1 for f in v["findings"] if not f["ok"])
        checks = "seed=%s: %d checks, %d failed" % (v["seed"], len(v["findings"]), failed)
        trace = json.loads((out / "cases" / entry["key"] / "record.json").read_text())["trace_hash"]
        found[(Path(entry["scenario"]).name, entry["case"])] = (
            "PASS" if entry["status"] == "passed" else "FAIL", checks, trace)
    return summary, found


def allure_tests(results):
    return [json.loads(Path(p).read_text()) for p in glob.glob(str(results / "*-result.json"))]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_sweep_gives_fl_hil_runs_verdicts_one_test_per_case_and_resumes(scenarios, tmp_path, executor):
    out = tmp_path / "sweep"
    proc = fl_hil("sweep", scenarios, "--backend", "virtual", "-o", out, "--executor", executor, "-j", 2,
                  *(["--no-report"] if executor != "ray" else []))
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the lossy case fails
    assert "3 cases: 2 passed, 1 failed, 0 broken (3 run now, 0 already done)" in proc.stdout, proc.stdout
    # its findings, with the seed that replays it
    assert re.search(r"^FAILED \S*lossy.toml\[seed=4\]: FAIL oracle .*expected", proc.stdout, re.M), proc.stdout
    assert "replay with seed=4" in proc.stdout

    summary, found = sweep_verdicts(out)
    assert found == run_verdicts(scenarios, tmp_path)  # same verdicts, same checks, same traces
    assert sorted(found) == [("clean.toml", "seed=1"), ("clean.toml", "seed=2"), ("lossy.toml", "seed=4")]

    tests = allure_tests(out / "allure-results")
    assert len(tests) == 3 and len({t["historyId"] for t in tests}) == 3
    lossy = next(t for t in tests if "lossy" in t["fullName"])
    assert lossy["status"] == "failed" and "FAIL oracle" in lossy["statusDetails"]["message"]
    names = {a["name"] for a in lossy["attachments"]}
    assert {"findings", "run record", "convergence"} <= names, names
    assert all(t["status"] == "passed" for t in tests if t is not lossy)
    if executor == "ray":
        assert "local Ray (2 CPUs, loopback only" in proc.stdout
        _check_html_report(out, proc.stdout)

    again = fl_hil("sweep", scenarios, "--backend", "virtual", "-o", out, "--executor", executor, "--no-report")
    assert again.returncode == 1, again.stdout + again.stderr
    assert "3 of 3 cases already done" in again.stdout
    assert "(0 run now, 3 already done)" in again.stdout
    assert "running on" not in again.stdout  # no executor was even started
    assert len(allure_tests(out / "allure-results")) == 3


def _check_html_report(out, stdout):
    from flhil.harness.report import html
    try:
        html.allure_bin(install=False)
    except html.ReportToolMissing as e:
        assert "no HTML report" in stdout
        pytest.skip("the HTML report needs Allure Report 3 (%s); the Allure results were checked" % e)
    stats = json.loads((out / "report" / "summary.json").read_text())["stats"]
    assert stats["total"] == 3 and stats["passed"] == 2, stats


def test_editing_a_scenario_file_runs_its_cases_again_and_only_them(scenarios, tmp_path):
    out = tmp_path / "sweep"
    first = fl_hil("sweep", scenarios, "-o", out, "--executor", "inline", "--no-report")
    assert first.returncode == 1, first.stdout + first.stderr
    (scenarios / "lossy.toml").write_text(LOSSY.replace("loss = 0.5", "loss = 0.0"))
    second = fl_hil("sweep", scenarios, "-o", out, "--executor", "inline", "--no-report", "--seed", 1, "--seed", 2)
    assert second.returncode == 0, second.stdout + second.stderr
    # clean.toml seeds 1 and 2 are the same cases as before; lossy.toml changed and seed=1,2 are new
    assert "2 of 4 cases already done" in second.stdout, second.stdout
    assert "4 cases: 4 passed, 0 failed, 0 broken (2 run now, 2 already done)" in second.stdout
    assert len(allure_tests(out / "allure-results")) == 4  # this sweep's cases only


def test_bad_input_exits_2_with_the_same_message_as_fl_hil_run(scenarios, tmp_path):
    broken = scenarios / "broken.toml"
    broken.write_text(CLEAN.replace("count = 3", "count = 1"))
    sweep = fl_hil("sweep", scenarios, "-o", tmp_path / "out", "--no-report")
    run = fl_hil("run", broken, "--backend", "virtual", "--report-dir", tmp_path / "r")
    assert sweep.returncode == 2 and run.returncode == 2, sweep.stderr + run.stderr
    assert "broken.toml: nodes.count (line" in sweep.stderr
    assert sweep.stderr.strip().splitlines()[-1].endswith(run.stderr.strip().splitlines()[-1].split(": ", 1)[1])
    assert "Traceback" not in sweep.stderr
    missing = fl_hil("sweep", tmp_path / "nowhere", "-o", tmp_path / "out", "--no-report")
    assert missing.returncode == 2 and "nowhere: no such file or directory" in missing.stderr
    assert not (tmp_path / "out" / "cases").exists()


def test_a_case_that_hangs_is_broken_with_its_stack_and_the_sweep_goes_on():
    with ProcessExecutor(jobs=1) as executor:
        results = dict(executor.imap(time.sleep, [0.01, 60, 0.01], timeout_s=2.0))
    assert results[0].ok and results[2].ok  # the worker was replaced
    assert results[1].kind == "timeout"
    assert "no result within 2s from its worker; the worker was stopped" in results[1].message
    assert 'line' in results[1].message and "in call" in results[1].message  # the worker's stack
    assert results[1].where.startswith("pid ")


@pytest.mark.parametrize("executor", EXECUTORS)
def test_ctrl_c_keeps_finished_cases_and_leaves_no_worker_behind(tmp_path, executor):
    d = tmp_path / "many"
    d.mkdir()
    (d / "clean.toml").write_text(CLEAN)
    out = tmp_path / "sweep"
    seeds = [a for s in range(1, 41) for a in ("--seed", str(s))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAY_ADDRESS"))}
    proc = subprocess.Popen([sys.executable, "-m", "flhil.harness", "sweep", str(d), "-o", str(out), "--executor",
                             executor, "-j", "2", "--no-report", *seeds], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # until the first case is done
            lines.append(line)
            if line.startswith("[1/40]") or time.monotonic() > deadline:
                break
        assert any(line.startswith("[1/40]") for line in lines), "".join(lines)
        session = next((m.group(1) for m in map(re.compile(r"session (\S+?)\)").search, lines) if m), None)
        workers = _processes_of(session) if session else []
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole process group
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = "".join(lines) + rest
    assert proc.returncode == 130, text
    assert "interrupted: the cases that finished are kept" in text
    if executor == "ray":
        assert session and workers, text  # the local Ray was seen running
        time.sleep(1)
        assert _processes_of(session) == [], "Ray processes outlived the sweep"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and 1 <= summary["passed"] < 40
    assert len(allure_tests(out / "allure-results")) == summary["passed"] + summary["failed"] + summary["broken"]
    done = next(e["seed"] for e in summary["cases"] if e and e["status"] == "passed")
    again = fl_hil("sweep", d, "-o", out, "--executor", "inline", "--no-report", "--seed", done)
    assert again.returncode == 0 and "1 of 1 cases already done" in again.stdout, again.stdout


def _processes_of(session):
    """PIDs of the processes whose command line names the Ray session."""
    name = os.path.basename(session).encode()
    pids = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if name in Path(cmdline).read_bytes():
                pids.append(int(cmdline.split("/")[2]))
        except OSError:
            pass
    return [p for p in pids if p != os.getpid()]


def test_without_ray_the_sweep_runs_on_worker_processes_and_says_so(scenarios, tmp_path):
    out = tmp_path / "sweep"
    no_ray = ("import sys; sys.modules['ray'] = None  # as if Ray were not installed\n"
              "from flhil.harness.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-c", no_ray, "sweep", str(scenarios / "clean.toml"), "-o", str(out),
                           "--no-report", "-j", "1"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "running on 1 worker process on this host (Ray is not installed" in proc.stdout
    assert "2 cases: 2 passed" in proc.stdout
    cluster = subprocess.run([sys.executable, "-c", no_ray, "sweep", str(scenarios), "-o", str(out),
                              "--address", "auto", "--no-report"], capture_output=True, text=True, timeout=60, env=env)
    assert cluster.returncode == 2 and "--address needs Ray" in cluster.stderr, cluster.stderr


def test_fault_search_shards_on_worker_processes_find_what_they_find_here():
    """The search's shards give the same answer wherever they run; shard 0 is the search without
    shards."""
    from flhil.harness.run import search
    spec = search.base_spec("decentralized", nodes=4, iterations=3)
    expect = search.DEFAULT_EXPECT["decentralized"]
    here = search.search(spec, expect, max_examples=20, shards=2)
    with ProcessExecutor(jobs=2) as executor:
        there = search.search(spec, expect, max_examples=20, shards=2, executor=executor, timeout_s=120)
    assert here == there and here[0] is not None and here[2] == []
    assert "mass_conserved" in here[1] and search.plan_size(here[0]) == 1
    alone = search.find_counterexample(spec, search.expect_property(expect), max_examples=20)
    assert here[:2] == alone  # a tie goes to the lowest shard


def test_real_time_cases_run_on_this_hosts_lab_and_not_on_a_cluster(tmp_path):
    d = tmp_path / "rt"
    d.mkdir()
    (d / "pc.toml").write_text(CLEAN.replace("count = 3", "count = 3\nboards = 0"))  # PC nodes only
    out = tmp_path / "sweep"
    proc = fl_hil("sweep", d, "--backend", "realtime", "--seed", 1, "-o", out, "--no-report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "running in this process, one at a time" in proc.stdout
    entry = json.loads((out / "summary.json").read_text())["cases"][0]
    assert entry["status"] == "passed" and entry["backend"] == "realtime"
    assert json.loads((out / "cases" / entry["key"] / "record.json").read_text())["backend"] == "pc"
    cluster = fl_hil("sweep", d, "--backend", "realtime", "--address", "auto", "-o", out, "--no-report")
    assert cluster.returncode == 2 and "a cluster's workers cannot reach them" in cluster.stderr
