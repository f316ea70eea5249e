"""Figures and tables of a run record: convergence and timing plots (PNG, matplotlib's Agg
backend, no display), the fault timeline (CSV), the timing table. The pytest plugin attaches them
to Allure (`flhil.fixtures.allure_glue`)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend choice)

# Nodes take colours along viridis (blue to yellow); faults take warm and dark colours outside it,
# so a fault is never read as a node.
FAULT_COLOURS = {
    "loss": "crimson", "burst_loss": "deeppink", "delay": "darkorange", "dup": "saddlebrown",
    "reorder": "darkviolet", "partition": "lightcoral", "crash": "black", "rejoin": "dimgray",
    "slot_jitter": "peru", "clock_skew": "slategray",
}
FAULT_COLUMNS = ["at_ms", "t", "n", "kind", "dst", "p", "i", "ms"]


def _title(record, what):
    return "%s: %s, %d nodes, seed %s" % (what, record.algorithm or "?", record.n_nodes, record.seed)


def node_colour(k, n):
    return plt.cm.viridis(0.05 + 0.85 * (k / max(1, n - 1)))


def _scalar(v):
    """A plottable number from a telemetry value (a model [w, b, ...] plots its first weight)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)) and v and isinstance(v[0], (int, float)):
        return float(v[0])
    return None


def metric_name(record):
    """What the app's per-step `v` is (its module's METRIC), for the axis label."""
    app = record.spec.get("app")
    try:
        module = __import__("flhil.apps." + str(app), fromlist=["METRIC"])
    except ImportError:
        return "value"
    return getattr(module, "METRIC", "value")


def convergence_plot(record, path, target=None) -> Path:
    """Value per node per round/slot (round_end / slot_end `v`). With `target` (from
    `plot_target`): the expected final values as dashed lines, the eps band around the consensus
    value and theory's round bound. Fault windows (partitions, nodes down) are shaded spans;
    message faults are ticks in a strip along the bottom, one row per kind."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ids = record.node_ids()
    for k, node in enumerate(ids):
        points = [(i, _scalar(v)) for i, v in sorted(record.step_values(node).items())]
        points = [(i, y) for i, y in points if y is not None]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, color=node_colour(k, len(ids)),
                    label="node %d" % node)
    target = target or {}
    for value in sorted(set(v for v in target.get("final", ()) if isinstance(v, (int, float)))):
        ax.axhline(value, color="gray", linestyle="--", linewidth=0.8)
    if target.get("final"):
        ax.plot([], [], color="gray", linestyle="--", linewidth=0.8, label="expected")
    band = target.get("band")
    if band:
        ax.axhspan(band[0], band[1], color="tab:green", alpha=0.12, label="consensus within eps")
    if target.get("bound") is not None:
        ax.axvline(target["bound"], color="tab:green", linestyle=":", label="theory: by round %d" % target["bound"])
    _fault_spans(ax, record)
    rows = {}
    for f in record.faults():
        kind = f.get("kind", "?")
        if not isinstance(f.get("i"), (int, float)) or kind in ("partition", "crash", "rejoin"):
            continue
        first = kind not in rows
        row = rows.setdefault(kind, len(rows))
        ax.scatter([f["i"]], [0.03 + 0.05 * row], marker="|", s=120, color=FAULT_COLOURS.get(kind, "black"),
                   transform=ax.get_xaxis_transform(), label="fault: %s" % kind if first else None)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("round / slot")
    ax.set_ylabel(metric_name(record))
    ax.set_title(_title(record, "convergence"))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


def _fault_spans(ax, record):
    """Partitions (by rounds) and nodes down (dropout to rejoin) as shaded spans."""
    plan = record.fault_plan
    labelled = set()
    for part in plan.get("partitions") or []:
        if part.get("rounds"):
            a, b = part["rounds"]
            ax.axvspan(a - 0.5, b + 0.5, color=FAULT_COLOURS["partition"], alpha=0.18,
                       label=None if "partition" in labelled else "partition")
            labelled.add("partition")
    steps = max([i for n in record.node_ids() for i in record.step_values(n)] or [0])
    for d in plan.get("dropouts") or []:
        end = d["at"] + d["down"] if d.get("down") is not None else steps + 1
        ax.axvspan(d["at"] - 0.5, end - 0.5, color=FAULT_COLOURS["crash"], alpha=0.08,
                   label=None if "down" in labelled else "node down")
        labelled.add("down")


def plot_target(record, oracle=None, expect=None):
    """What the convergence plot draws beside the values: the oracle's final values, the eps
    band of a consensus expectation around the mean of the initial values, theory's round bound."""
    from flhil.harness.results import oracles
    target = {}
    if oracle and oracle.get("final"):
        target["final"] = oracle["final"]
    consensus = (expect or {}).get("consensus")
    if consensus:
        init = oracles.initial_values(record.n_nodes)
        mean, spread = sum(init) / len(init), max(init) - min(init)
        half = consensus["eps"] * spread / 2
        target["band"] = (mean - half, mean + half)
        try:
            rounds = oracles.rounds_to_eps(record.algorithm, record.n_nodes, consensus["eps"])
            target["bound"] = int(-(-rounds * consensus.get("safety", 2.0) // 1))
        except ValueError:
            pass
    return target


def accuracy_plot(record, path) -> Path:
    """HeteroFL: test accuracy on the held-out digits after every round, of the global model and of
    each trained level's sub-model (evaluated on the host from the server's model events)."""
    from flhil.harness.results import heterofl
    fig, ax = plt.subplots(figsize=(8, 4.5))
    curves = heterofl.view(record).curves()
    for k, (level, points) in enumerate(sorted(curves.items())):
        xs, ys = zip(*[(i + 1, a) for i, a in points])
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5 if k == 0 else 1,
                color=node_colour(k, max(len(curves), 2)), label="level %s%s" % (level, " (global)" if k == 0 else ""))
    _fault_spans(ax, record)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylim(0, 1)
    ax.set_xlabel("rounds aggregated (0: the initial model)")
    ax.set_ylabel("test accuracy")
    ax.set_title(_title(record, "accuracy per level"))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return _save(fig, path)


def timing_plot(record, path) -> Path:
    """Round latency per round per node; for TDM runs, slot lateness against the guard time."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    tdm = not any(record.round_latencies_ms(n) for n in record.node_ids())
    for node in record.node_ids():
        series = record.slot_lateness_ms(node) if tdm else record.round_latencies_ms(node)
        if series:
            xs = sorted(series)
            ax.plot(xs, [series[i] for i in xs], marker=".", linewidth=1,
                    color=node_colour(record.node_ids().index(node), record.n_nodes), label="node %d" % node)
    guard = record.timing.get("guard_ms")
    if tdm and isinstance(guard, (int, float)):
        ax.axhline(guard, color="red", linestyle="--", label="guard %g ms" % guard)
    ax.set_xlabel("slot" if tdm else "round")
    ax.set_ylabel("slot start lateness (ms)" if tdm else "round latency (ms)")
    ax.set_title(_title(record, "slot lateness" if tdm else "round latency"))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path


def fault_timeline_csv(record) -> str:
    """One row per injected fault, by time on the run's clock (`at_ms`: from the start of slot 0;
    `t`: the node's own clock, µs); kind-specific fields go in `extra` as JSON."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FAULT_COLUMNS + ["extra"])
    for f in record.faults():
        f = dict(f)
        if isinstance(f.get("at_us"), int):
            f["at_ms"] = round(f.pop("at_us") / 1000.0, 3)
        extra = {k: v for k, v in f.items() if k not in FAULT_COLUMNS and k not in ("ev", "at_us")}
        writer.writerow([_cell(f.get(c)) for c in FAULT_COLUMNS]
                        + [json.dumps(extra, sort_keys=True) if extra else ""])
    return buf.getvalue()


def _cell(v):
    return "" if v is None else (json.dumps(v) if isinstance(v, (list, dict)) else v)


def timing_table(record) -> str:
    """Markdown table per node: rounds, mean / p95 / max round latency (ms) and worst slot
    lateness (ms), all in the node's own clock."""
    lines = ["| node | rounds | mean ms | p95 ms | max ms | slots | worst late ms |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for node in record.node_ids():
        lat = sorted(record.round_latencies_ms(node).values())
        late = record.slot_lateness_ms(node)
        if lat:
            p95 = lat[max(0, -(-95 * len(lat) // 100) - 1)]
            cells = [len(lat), "%.3f" % (sum(lat) / len(lat)), "%.3f" % p95, "%.3f" % lat[-1]]
        else:
            cells = [0, "", "", ""]
        cells += [len(late), "%.3f" % max(late.values()) if late else ""]
        lines.append("| %d | " % node + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def read_log(log):
    """A node log given as text, a path, or None."""
    if log is None:
        return ""
    if isinstance(log, Path) or (isinstance(log, str) and "\n" not in log and _is_file(log)):
        return Path(log).read_text(encoding="utf-8", errors="replace")
    return str(log)


def _is_file(name):
    try:
        return Path(name).is_file()
    except (OSError, ValueError):
        return False
