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

FAULT_COLOURS = {
    "loss": "tab:red", "burst_loss": "tab:pink", "delay": "tab:orange", "dup": "tab:olive",
    "reorder": "tab:cyan", "partition": "tab:purple", "crash": "black", "rejoin": "tab:green",
    "slot_jitter": "tab:brown", "clock_skew": "tab:gray",
}
FAULT_COLUMNS = ["t", "n", "kind", "dst", "p", "i", "ms"]


def _title(record, what):
    return "%s: %s, %d nodes, seed %s" % (what, record.algorithm or "?", record.n_nodes, record.seed)


def _scalar(v):
    """A plottable number from a telemetry value (a model [w, b, ...] plots its first weight)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)) and v and isinstance(v[0], (int, float)):
        return float(v[0])
    return None


def convergence_plot(record, path) -> Path:
    """Value per node per round/slot (round_end / slot_end `v`); faults as ticks at the round
    they hit (fault `i`), one colour per kind."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for node in record.node_ids():
        points = [(i, _scalar(v)) for i, v in sorted(record.step_values(node).items())]
        points = [(i, y) for i, y in points if y is not None]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, label="node %d" % node)
    # Faults: a faint full-height line plus a marker in a strip along the bottom, one row per
    # kind, so several kinds in one round stay distinguishable.
    rows = {}
    for f in record.faults():
        if not isinstance(f.get("i"), (int, float)):
            continue
        kind = f.get("kind", "?")
        first = kind not in rows
        row = rows.setdefault(kind, len(rows))
        colour = FAULT_COLOURS.get(kind, "tab:blue")
        ax.axvline(f["i"], color=colour, alpha=0.15, linewidth=1)
        ax.scatter([f["i"]], [0.03 + 0.05 * row], marker="|", s=120, color=colour,
                   transform=ax.get_xaxis_transform(), label="fault: %s" % kind if first else None)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("round / slot")
    ax.set_ylabel("value")
    ax.set_title(_title(record, "convergence"))
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", ncol=2)
    return _save(fig, path)


def timing_plot(record, path) -> Path:
    """Round latency per round per node; for TDM runs, slot lateness against the guard time."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    tdm = not any(record.round_latencies_ms(n) for n in record.node_ids())
    for node in record.node_ids():
        series = record.slot_lateness_ms(node) if tdm else record.round_latencies_ms(node)
        if series:
            xs = sorted(series)
            ax.plot(xs, [series[i] for i in xs], marker=".", linewidth=1, label="node %d" % node)
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
    """One row per injected fault, by time; kind-specific fields beyond FAULT_COLUMNS go in
    `extra` as JSON."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FAULT_COLUMNS + ["extra"])
    for f in record.faults():
        extra = {k: v for k, v in f.items() if k not in FAULT_COLUMNS and k != "ev"}
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
