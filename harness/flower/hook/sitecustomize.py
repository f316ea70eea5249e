"""fl-hil's telemetry inside a Flower ServerApp process (`flwr-serverapp`), loaded through
PYTHONPATH by every process of a Flower lab and active only in the ServerApp's: it wraps the Grid
the ServerApp gets, so the user's app runs unchanged, and writes fl-hil telemetry lines
(`@@flhil {json}`) to the file FLHIL_FLOWER_TELEMETRY names:

- `ready` when the ServerApp starts (its t0 is the run's time origin),
- `round_start` / `round_end` per training round (`got`: the Flower node ids that answered
  without error, `miss`: asked but not answered, `need`: asked; `loss`/`acc` and every number of
  the aggregated and central metrics), `call` per send_and_receive, `waiting` while a wait lasts
  (what for: replies from which nodes, or nodes to sample),
- `result` (the last central or aggregated metrics) and `done`, or `error` with the traceback.

send_and_receive is the Grid's own push/pull loop with a shorter pull period (FLHIL_FLOWER_POLL_S;
Flower's own sleeps 3 s between pulls), same timeout and same replies.
Another sitecustomize on the path is still imported after this one."""
import os
import sys

_PATH = os.environ.get("FLHIL_FLOWER_TELEMETRY")


def _chain():
    """Import the sitecustomize this one shadows, if any (a venv's own)."""
    here = os.path.dirname(os.path.abspath(__file__))
    import importlib.util
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_flhil_chained_sitecustomize", candidate)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception:  # noqa: BLE001 - someone else's start-up hook must not stop the app
                pass
            return


def _install():
    import json
    import threading
    import time
    import traceback

    from flwr.serverapp import server_app as server_app_module

    lock = threading.Lock()
    out = open(_PATH, "a", buffering=1, encoding="utf-8")
    poll_s = float(os.environ.get("FLHIL_FLOWER_POLL_S", "0.25"))
    report_s = float(os.environ.get("FLHIL_FLOWER_REPORT_S", "1.0"))

    def now():
        return int(time.monotonic() * 1e6)

    def emit(ev, **fields):
        fields.update(ev=ev, n=0, t=now())
        text = "@@flhil " + json.dumps(fields, default=str) + "\n"
        with lock:
            out.write(text)

    def numbers(record):
        if record is None:
            return {}
        try:
            items = dict(record).items()
        except Exception:  # noqa: BLE001
            return {}
        return {k: float(v) for k, v in items if isinstance(v, (int, float)) and not isinstance(v, bool)}

    state = {"round": 0, "open": None, "activity": None, "since": None, "last": {}}

    def set_activity(activity):
        state["activity"] = activity
        state["since"] = time.monotonic() if activity is not None else None

    def reporter():
        while True:
            time.sleep(report_s)
            activity, since = state["activity"], state["since"]
            if activity is not None and since is not None and time.monotonic() - since >= report_s:
                emit("waiting", ms=round((time.monotonic() - since) * 1000), i=state["round"], **activity)

    def close_round():
        r = state["open"]
        if r is None:
            return
        state["open"] = None
        got = r["got"]
        emit("round_end", i=r["i"], got=got, need=len(r["sent"]), miss=sorted(set(r["sent"]) - set(got)),
             skipped=not got, errors=r["errors"], **r["metrics"])

    def metrics_of(message):
        try:
            content = message.content
            out_ = {}
            for name in content.metric_records:
                out_.update(numbers(content.metric_records[name]))
            return out_
        except Exception:  # noqa: BLE001
            return {}

    class GridProxy:
        """The ServerApp's Grid, watched."""

        def __init__(self, grid):
            self._grid = grid

        def __getattr__(self, name):
            return getattr(self._grid, name)

        def get_node_ids(self):
            ids = list(self._grid.get_node_ids())
            if state["activity"] is None or state["activity"].get("p") == "sample":
                if state["activity"] is None:
                    set_activity({"p": "sample", "on": ids})
                else:
                    state["activity"]["on"] = ids
            return ids

        def send_and_receive(self, messages, *, timeout=None):
            messages = list(messages)
            if not messages:
                return self._grid.send_and_receive(messages, timeout=timeout)
            kind = messages[0].metadata.message_type if messages else "?"
            dst = [m.metadata.dst_node_id for m in messages]
            base = kind.split(".")[0]
            if base == "train":
                close_round()
                state["round"] += 1
                state["open"] = {"i": state["round"], "sent": dst, "got": [], "errors": [], "metrics": {}}
                emit("round_start", i=state["round"], sent=dst)
            t0 = time.monotonic()
            ids = list(self._grid.push_messages(messages))
            pending = {i: d for i, d in zip(ids, dst)}
            replies = []
            reply_ms = {}
            end = None if timeout is None else t0 + timeout
            set_activity({"p": base, "on": sorted(pending.values())})
            try:
                while pending:
                    got = list(self._grid.pull_messages(list(pending)))
                    replies.extend(got)
                    for m in got:
                        d = pending.pop(m.metadata.reply_to_message_id, None)
                        if d is not None:
                            reply_ms[str(d)] = round((time.monotonic() - t0) * 1000, 1)
                    state["activity"] = {"p": base, "on": sorted(pending.values())}
                    if not pending or (end is not None and time.monotonic() >= end):
                        break
                    time.sleep(poll_s if end is None else max(0.0, min(poll_s, end - time.monotonic())))
            finally:
                set_activity(None)
            ok = [m.metadata.src_node_id for m in replies if not m.has_error()]
            dst_of = dict(zip(ids, dst))  # an error reply may come from the SuperLink itself (node 1)
            errors = [{"node": dst_of.get(m.metadata.reply_to_message_id, m.metadata.src_node_id),
                       "msg": str(m.error.reason)} for m in replies if m.has_error()]
            emit("call", p=base, i=state["round"], sent=dst, got=ok, errors=errors,
                 ms=round((time.monotonic() - t0) * 1000, 1), timeout_s=timeout, reply_ms=reply_ms)
            r = state["open"]
            if r is not None:
                if base == "train":
                    r["got"], r["errors"] = ok, errors
                    losses = [metrics_of(m) for m in replies if not m.has_error()]
                    for key in sorted({k for m in losses for k in m}):
                        vals = [m[key] for m in losses if key in m]
                        r["metrics"]["train_" + key if not key.startswith("train") else key] = sum(vals) / len(vals)
                else:
                    evals = [metrics_of(m) for m in replies if not m.has_error()]
                    for key in sorted({k for m in evals for k in m}):
                        vals = [m[key] for m in evals if key in m]
                        r["metrics"][key] = sum(vals) / len(vals)
                        state["last"][key] = sum(vals) / len(vals)
            return replies

    def central(fn):
        def wrapped(server_round, arrays):
            res = fn(server_round, arrays)
            values = numbers(res)
            if values:
                state["last"].update(values)
                r = state["open"]
                if r is not None and server_round == r["i"]:
                    r["metrics"].update(values)
                    if "accuracy" in values:
                        r["metrics"]["acc"] = values["accuracy"]
            return res
        return wrapped

    try:
        from flwr.serverapp.strategy import strategy as strategy_module
        original_start = strategy_module.Strategy.start

        def start(self, grid, initial_arrays, *args, **kwargs):
            if kwargs.get("evaluate_fn") is not None:
                kwargs["evaluate_fn"] = central(kwargs["evaluate_fn"])
            return original_start(self, grid, initial_arrays, *args, **kwargs)
        strategy_module.Strategy.start = start
    except Exception:  # noqa: BLE001 - an older Flower without the Message API strategies
        pass

    original_call = server_app_module.ServerApp.__call__

    def call(self, grid, context):
        emit("boot", impl="flower-serverapp", ver=_flwr_version(), heap=None)
        emit("ready", t0=now(), peers=0, missing=[])
        threading.Thread(target=reporter, daemon=True, name="flhil-report").start()
        try:
            original_call(self, GridProxy(grid), context)
        except BaseException as e:
            close_round()
            emit("error", msg="%s: %s" % (type(e).__name__, e), tb=traceback.format_exc())
            emit("result", value=_result(state["last"], state["round"]), status="crashed")
            emit("done")
            raise
        close_round()
        emit("result", value=_result(state["last"], state["round"]), status="ok")
        emit("done")

    server_app_module.ServerApp.__call__ = call


def _result(last, rounds):
    value = dict(last)
    value["rounds"] = rounds
    for key in ("accuracy", "eval_acc", "acc"):
        if key in last:
            value["accuracy"] = last[key]
            break
    return value


def _flwr_version():
    try:
        from importlib.metadata import version
        return version("flwr")
    except Exception:  # noqa: BLE001
        return None


if _PATH and os.path.basename(sys.argv[0] if sys.argv else "") == "flwr-serverapp":
    try:
        _install()
    except Exception as _e:  # noqa: BLE001 - never stop the user's app; say why there is no telemetry
        with open(_PATH, "a", encoding="utf-8") as _f:
            _f.write("fl-hil hook failed: %r\n" % (_e,))
_chain()
