"""Telemetry: one JSON object per line behind a fixed prefix, in the node's own clock (µs)."""
import json

PREFIX = "@@flhil "


class Telemetry:
    """Writes events through `write(line)` (print by default); `sink(event_dict)` receives the
    same events as dicts when nodes run in-process and the host wants them without parsing."""

    def __init__(self, node_id, clock, write=None, sink=None):
        self.node_id = node_id
        self.clock = clock
        self._write = write if write is not None else (None if sink is not None else print)
        self._sink = sink

    def emit(self, ev, **fields):
        fields["ev"] = ev
        fields["n"] = self.node_id
        fields["t"] = self.clock.now_us()
        if self._sink is not None:
            self._sink(fields)
        if self._write is not None:
            try:
                line = json.dumps(fields)
            except (TypeError, ValueError):
                fields = {"ev": "error", "n": self.node_id, "t": fields["t"],
                          "msg": "telemetry value of event %s is not JSON" % ev}
                line = json.dumps(fields)
            self._write(PREFIX + line)
