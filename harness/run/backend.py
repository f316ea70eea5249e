"""What runs the nodes of a run. One interface, two implementations: `LabBackend` (real time:
emulated boards, real boards and PC processes of a lab, `run/realtime.py`) and `VirtualBackend`
(every node in one event loop on a virtual clock, `run/virtual.py`). The pipeline builds the run
configs once and hands them to the backend, which feeds what its nodes say to the collector.

    backend = make_backend("virtual")                       # or:
    backend = make_backend("realtime", lab=lab, boards=2, hil=False)
    backend = make_backend("flower")                        # a Flower project (harness/flower/)
    record = pipeline.execute(spec, backend)
"""
import abc


class Backend(abc.ABC):
    name = "?"
    deterministic = False  # the run id and key follow from the seed (virtual time: exact traces)

    @abc.abstractmethod
    def place(self, spec, run_dir):
        """The NodeSlots of a run: where each of its nodes runs (allocating what it needs)."""

    @abc.abstractmethod
    def run(self, spec, configs, collector):
        """Run the nodes with their configs until they are done or the spec's deadline passes;
        returns (unfinished node ids, why it stopped, extra record fields)."""

    def secrets(self):
        """Strings that must never appear in logs or reports (the lab's Wi-Fi password)."""
        return []

    def wifi(self):
        """The Wi-Fi credentials boards join with, or None."""
        return None

    def release(self, slots):  # noqa: B027 - most backends hold nothing per run
        """Give back what `place` took for one run (PC processes); boards stay for later runs."""


def make_backend(kind, **options):
    """The backend named `kind` ("realtime", "virtual" or "flower") with its options."""
    if kind == "virtual":
        from flhil.harness.run.virtual import VirtualBackend
        return VirtualBackend(**options)
    if kind == "realtime":
        from flhil.harness.run.realtime import LabBackend
        return LabBackend(**options)
    if kind == "flower":
        from flhil.harness.flower.backend import FlowerBackend
        return FlowerBackend(**options)
    raise ValueError("unknown backend %r: realtime, virtual or flower" % (kind,))
