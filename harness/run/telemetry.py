"""Reading the nodes' telemetry lines on the host."""
import json

from flhil.telemetry import PREFIX


def parse_line(line):
    """The event of a telemetry line, None for any other output. Broken telemetry (a line cut by a
    reset, serial garbage) becomes an `unparsed` event instead of an exception, so nothing is lost."""
    at = line.find(PREFIX)
    if at < 0:
        return None
    text = line[at + len(PREFIX):].strip()
    try:
        ev = json.loads(text)
    except ValueError:
        return {"ev": "unparsed", "text": text[:200]}
    if not isinstance(ev, dict) or "ev" not in ev:
        return {"ev": "unparsed", "text": text[:200]}
    return ev
