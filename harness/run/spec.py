"""The run spec: what one run is, whatever runs it.

    RunSpec(app="central_avg", nodes=5, args={"iterations": 6}, faults=plan, timing={"round_ms": 300})

It is validated like a scenario file (unknown keys with "did you mean", ranges, node ids against
the node count, the app's arguments against what the app declares), so a typo fails before any
node starts. A spec does not say where it runs: the caller picks a backend (`run.backend`).
"""
import copy
import os

from pydantic import Field

from flhil.harness.config.faults import SEED_MAX, FaultPlanConfig
from flhil.harness.config.heterofl import HeteroFLConfig
from flhil.harness.config.model import ConfigModel, Float, Int, Text, validate
from flhil.harness.config.scenario import FLOWER, ArgsConfig, TimingConfig
from flhil.harness.config.toml import At, Source, suggestion
from flhil.harness.run import apps
from flhil.node import STARTUP_MARGIN_MS, TIMING_DEFAULTS
from flhil.vocab import ALGORITHMS

# the algorithm an app implements, for specs that name only the app
APP_ALGORITHMS = {app: algorithm for algorithm, app in ALGORITHMS.items()}
DEFAULT_PORT = 6000
MAX_RUN_NODES = 1_000_000  # virtual time; a lab backend refuses what its address blocks cannot hold
STARTUP_SLACK_S = 5    # beyond the start barrier's own deadline, for processes to come up
RUN_SLACK_S = 10       # beyond every step at its deadline x 1.5


class RunSpecModel(ConfigModel):
    app: Text(description="the app: a built-in (firmware/apps/), a Python file, or a module on the app path") \
        | None = None
    algorithm: Text(description="the algorithm; default: the app's") | None = None
    nodes: Int(1, MAX_RUN_NODES, description="number of nodes")
    server: Int(0, description="id of the FL server and start-up coordinator") = 0
    args: ArgsConfig = Field(default_factory=ArgsConfig)
    timing: TimingConfig = Field(default_factory=TimingConfig)
    faults: FaultPlanConfig = Field(default_factory=FaultPlanConfig)
    seed: Int(0, SEED_MAX, description="seed of the fault layer and the apps' data") = 1
    strict: bool = False
    max_frame_kb: Int(1, 4096, description="largest message, KiB (default: the firmware's, 64)") | None = None
    deadline_s: Float(0, lo_open=True, description="longest the run may take; default from the timing") \
        | None = None
    heterofl: HeteroFLConfig | None = Field(None, description="HeteroFL: client levels and data split")
    flower: dict | None = None  # algorithm "flower": the scenario's [flower] table (config/flower.py)

    def check(self, at, ctx):
        if self.server >= self.nodes:
            (at / "server").fail(f"expected a node id from 0 to {self.nodes - 1}, got {self.server}")
        if self.algorithm == FLOWER:
            if self.flower is None:
                (at / "flower").fail("algorithm flower needs the [flower] table (project, supernodes)")
            return
        if self.app is None and self.algorithm is None:
            at.fail("give an app or an algorithm")
        if self.app is not None and not apps.is_builtin(self.app) and self.algorithm is None:
            (at / "algorithm").fail(f"give the algorithm the app {self.app} implements ({', '.join(ALGORITHMS)})")
        if self.algorithm is not None and self.algorithm not in ALGORITHMS and self.app is None:
            (at / "algorithm").fail(f"expected an algorithm ({', '.join(ALGORITHMS)}) or an app, got "
                                    f"{self.algorithm!r}{suggestion(self.algorithm, ALGORITHMS)}")


class RunSpec:
    """One run: app, nodes, server, args, timing, fault plan (normalised), seed, strict."""

    FIELDS = ("app", "algorithm", "nodes", "server", "args", "timing", "faults", "seed", "strict",
              "max_frame_kb", "deadline_s", "heterofl", "flower")

    def __init__(self, **fields):
        at = At(Source(fields.pop("_source", None)), ())
        base_dir = fields.pop("_base_dir", None)  # a user's app file is relative to it
        nodes = fields.get("nodes")
        server = fields.get("server", 0)
        ctx = {"nodes": nodes if isinstance(nodes, int) and not isinstance(nodes, bool) else None,
               "server": server if isinstance(server, int) and not isinstance(server, bool) else None}
        model = validate(RunSpecModel, fields, at, ctx)
        self.nodes = model.nodes
        self.server = model.server
        self.algorithm = model.algorithm or APP_ALGORITHMS.get(model.app)
        self.flower = copy.deepcopy(model.flower) if self.algorithm == FLOWER else None
        self.app = FLOWER if self.flower is not None else model.app or ALGORITHMS[model.algorithm]
        self.args = model.args.data()
        self.timing = model.timing.data()
        faults = model.faults.data()
        faults.setdefault("seed", model.seed)
        self.faults = faults
        self.seed = model.seed
        self.strict = model.strict
        self.deadline = model.deadline_s
        self.max_frame_kb = model.max_frame_kb
        self.heterofl = model.heterofl.data() if model.heterofl is not None else None
        self._user_app = None
        if self.flower is not None:
            return  # a Flower project: checked by harness/flower before any process starts
        if not apps.is_builtin(self.app):
            try:
                self.app = apps.locate(self.app, base_dir)
                self._user_app = apps.stage(self.app)
            except apps.AppError as e:
                (at / "app").fail(str(e))
        apps.check_args(self._user_app.args if self._user_app else app_arguments(self.app), self.args,
                        at / "args", self.app)

    @classmethod
    def of(cls, spec):
        """A RunSpec from a RunSpec or its dict form (`to_dict`)."""
        return spec if isinstance(spec, cls) else cls(**dict(spec))

    @property
    def user_app(self):
        """The staged user's app (harness/run/apps.py), or None for a built-in."""
        return self._user_app

    @property
    def app_name(self):
        """The app as reports name it: a built-in's name, a user's file name."""
        return self.app if self._user_app is None else os.path.basename(self.app)

    def replace(self, **changes):
        d = self.to_dict()
        d.update(changes)
        return RunSpec(**d)

    def to_dict(self):
        return {"app": self.app, "algorithm": self.algorithm, "nodes": self.nodes, "server": self.server,
                "args": copy.deepcopy(self.args), "timing": dict(self.timing),
                "faults": copy.deepcopy(self.faults), "seed": self.seed, "strict": self.strict,
                "max_frame_kb": self.max_frame_kb, "deadline_s": self.deadline,
                **({"heterofl": copy.deepcopy(self.heterofl)} if self.heterofl is not None else {}),
                **({"flower": copy.deepcopy(self.flower)} if self.flower is not None else {})}

    def __eq__(self, other):
        return isinstance(other, RunSpec) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "RunSpec(%s)" % ", ".join("%s=%r" % kv for kv in self.to_dict().items() if kv[1] is not None)

    # -- what the spec implies -----------------------------------------------------------------
    def steps(self):
        """Rounds, iterations or slots of the run."""
        return step_count(self.args)

    def timing_full(self):
        """The timing the nodes run with: the firmware's defaults under the spec's values."""
        t = dict(TIMING_DEFAULTS)
        t.update(self.timing)
        return t

    def startup_deadline_s(self):
        """Longest the start barrier may take: a client's wait for the go, plus slack."""
        startup = self.timing_full()["startup_ms"]
        return (startup + max(STARTUP_MARGIN_MS, startup / 2)) / 1000 + STARTUP_SLACK_S

    def deadline_s(self):
        """Longest a healthy run may take: start-up, every step at its deadline x 1.5, the
        linger, plus slack. The same for every backend (in virtual seconds in virtual time)."""
        if self.deadline is not None:
            return self.deadline
        t = self.timing_full()
        per_step = max(t["round_ms"], t["recv_ms"], t["slot_ms"]) / 1000
        return (self.startup_deadline_s() + t["start_delay_ms"] / 1000 + self.steps() * per_step * 1.5
                + t["linger_ms"] / 1000 + RUN_SLACK_S)


def step_count(args):
    args = args or {}
    return max(1, args.get("iterations", 0) or 0, (args.get("slots", 0) or 0) * (args.get("blocks", 1) or 1))


def app_arguments(app):
    """{name: default} the app declares in its module's ARGS, or None (a free-form app)."""
    try:
        module = __import__("flhil.apps." + app, fromlist=["ARGS"])
    except ImportError:
        return None
    declared = getattr(module, "ARGS", None)
    return dict(declared) if isinstance(declared, dict) else None
