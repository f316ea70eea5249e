"""ODTS mock-up on get1Meas (upstream example 6).

Node i measures odata_i = i + 1 (constant) and starts from state = odata. In every slot it is
paired with one peer by `common.odts_schedule` (the ids rotated left by one per slot, neighbours
paired; the schedule repeats in every block, the state carries over), exchanges odata with it and
moves halfway: state = (state + peer_odata) / 2. A slot without a peer (odd n) or a missed slot
keeps the state. A node that rejoins after a dropout restarts from its initial state.
Args: `blocks` (default 1), `slots` per block (default 1). Result: the final state."""
from flhil.apps.common import odts_schedule, odts_update

ARGS = {"blocks": 1, "slots": 1}  # the arguments this app takes, with their defaults
METRIC = "state"  # what a slot's reported value is


async def run(node, args):
    blocks = args.get("blocks", ARGS["blocks"])
    slots = args.get("slots", ARGS["slots"])
    odata = float(node.id + 1)
    state = odata
    for _ in range(blocks):
        for s in range(slots):
            peer = odts_schedule(node.n, s).get(node.id)
            if peer is None:
                val = await node.getMeas([], None)  # sit the slot out, keep the slot clock
            else:
                val = await node.get1Meas(peer, odata)
            if node.status == "crashed":
                return None
            if node.rejoined(node.slot - 1):
                state = odata
            if val is not None and peer is not None:
                state = odts_update(state, val)
            node.report(state)
    return state
