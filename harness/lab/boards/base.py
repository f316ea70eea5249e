"""The interface every kind of node implements (design.md, "Board interface")."""

import abc


class Board(abc.ABC):
    """What runs one node of a run: a serial board, an emulated board or a PC process.

    `name` identifies it in logs and errors, `kind` is `serial`, `emulated` or `pc`, `address` is
    the IP it listens on. Deadlines are `time.monotonic()` values.
    """

    name: str
    kind: str
    address: str

    @abc.abstractmethod
    def prepare(self, firmware):
        """Make the firmware available (deploy to flash or point at the source tree)."""

    @abc.abstractmethod
    def start(self, run_config):
        """Write the run config and start the node; returns without waiting for it to finish."""

    @abc.abstractmethod
    def lines(self, deadline):
        """Iterate over the text lines the node prints until it ends or `deadline` passes."""

    @abc.abstractmethod
    def stop(self):
        """Stop the node; always safe to call."""

    @abc.abstractmethod
    def close(self):
        """Release the port or process; no process outlives it."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
