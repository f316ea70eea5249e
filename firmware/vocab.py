"""fl-hil's vocabulary, defined once: the names the nodes put on the wire and in telemetry, and
the names the harness, the plugin, reports and docs read back. Plain tuples and dicts, so a board
imports it too; nothing else in fl-hil spells these lists out."""

# -- messages (wire.py) ------------------------------------------------------------------------
# phase of a message: start-up (hello, go), centralized (cd: server to client, cu: client to
# server), decentralized (d1, d2), TDM slot (t)
PHASES = ("hello", "go", "cd", "cu", "d1", "d2", "t")
STARTUP_PHASES = ("hello", "go")  # never faulted: the faults under test are the FL protocol's
FL_PHASES = ("cd", "cu", "d1", "d2", "t")

# -- telemetry (telemetry.py; docs/design.md "Telemetry") --------------------------------------
EVENTS = ("boot", "listen", "ready", "round_start", "round_end", "slot_start", "slot_end",
          "slot_value", "fault", "drop", "refused", "waiting", "lag", "heap", "low_heap", "counts",
          "result", "error", "done", "model")
TERMINAL_EVENT = "done"

# `kind` of a `fault` event: what the fault layer injected
LOST_KINDS = ("loss", "burst_loss", "partition")            # the message never left
MESSAGE_FAULT_KINDS = LOST_KINDS + ("delay", "dup", "reorder")  # per message: replayable as a script
NODE_FAULT_KINDS = ("crash", "rejoin", "slot_jitter", "clock_skew")
# what a replay reproduces of the host's timing, beside the injected faults (only in a script):
# a message that reached its receiver after the receiver left its step, a node that stalled
LATE_KIND = "late"
STALL_KIND = "stall"
REPLAY_KINDS = (LATE_KIND, STALL_KIND)
SCRIPT_KINDS = MESSAGE_FAULT_KINDS + REPLAY_KINDS
FAULT_KINDS = MESSAGE_FAULT_KINDS + NODE_FAULT_KINDS + REPLAY_KINDS
# a fault plan's dropout shows as `crash` (and `rejoin` when the node comes back)
PLAN_FAULT_KINDS = ("loss", "burst_loss", "delay", "dup", "reorder", "partition", "dropout", "rejoin",
                    "slot_jitter", "clock_skew")

# `why` of a `drop` event: what a receiver refused. Frames, in the order the parser checks them
# (wire.py): the length, the sender in clear, the tag, the JSON text, then the fields
FRAME_REJECTS = ("oversize", "truncated", "bad_sender", "bad_tag", "too_deep", "bad_json", "bad_fields",
                 "other_run", "bad_dest", "bad_phase", "bad_iter", "bad_payload")
# messages the node refused: a duplicate, below the phase's floor (stale), beyond the window the
# protocol allows (future), the mailbox full (overflow), a callback that raised on it (cb_error)
MESSAGE_DROPS = ("duplicate", "stale", "future", "overflow", "cb_error")
DROP_REASONS = FRAME_REJECTS + MESSAGE_DROPS
# `why` of a `refused` event: connections a node closed (transport.py, "Bounded resources"):
# over the connection limit, no valid frame in time (idle), a frame that took too long (slow),
# the heap too low to take one more
CONN_REFUSALS = ("conn_limit", "idle", "slow", "low_heap")
# telemetry of frame rejects and refusals stops after this many events per reason (a flood must
# not flood the log); the `counts` event keeps counting every one
DROP_EVENTS_MAX = 20

# fate of an FL message at its receiver (the run record's `fates`): used in its step, or not:
# late (stale: dropped when it came after the receiver had left its step; unheard: it had not come
# when the receiver ended), lost (an injected fault), dropped (a drop reason)
FATES = ("in_time", "stale", "unheard", "lost", "dropped")
LATE_FATES = ("stale", "unheard")

# fields of a `counts` event: a node's transport counters. `rejected` sums the frame rejects and
# `future`; `refused` sums the connection refusals; each reason also has its own counter
COUNTERS = ("sent", "recv", "drop_fault", "rejected", "refused") + DROP_REASONS + CONN_REFUSALS
# what `[expect] drops` may bound: drop reasons, refusals and the counters of refused or lost
# messages
DROP_COUNTERS = DROP_REASONS + CONN_REFUSALS + ("rejected", "refused", "drop_fault")

# -- node outcome ----------------------------------------------------------------------------
# ok: returned a result; crashed: killed by the fault plan; error: raised or reported an error;
# timeout: still running at the run's deadline; missing: never reported anything
STATUSES = ("ok", "crashed", "error", "timeout", "missing")

# -- algorithms and the apps that implement them (firmware/apps/) ------------------------------
ALGORITHMS = {
    "centralized": "central_avg",
    "decentralized": "decentral_avg",
    "tdm": "odts",
    "getmeas": "getmeas",
    "logreg": "logreg",
    "fedmean": "fedmean",
    "heterofl": "heterofl",
}
# algorithms that run fl_centralized: one server, clients answer it (phases cd / cu)
CENTRALIZED_ALGORITHMS = ("centralized", "logreg", "fedmean", "heterofl")


def new_counts():
    """A zeroed set of transport counters."""
    counts = {}
    for k in COUNTERS:
        counts[k] = 0
    return counts
