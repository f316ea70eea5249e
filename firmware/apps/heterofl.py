"""HeteroFL (Diao et al., ICLR 2021) over fl_centralized: one global MLP (flhil.mlp), each client
trains the sub-model of its complexity level (the index prefix of the hidden layer, the output
layer whole) and the server averages every parameter over the replies that hold it.

The run config's `heterofl` table says what each node holds (the harness writes it:
harness/run/configs.py). Server: `levels` {client id: level}, and with `dynamic` a level mix
`mix` [[level, weight], ...] re-drawn for every client in every round, capped at the client's own
level (a board never gets more than its heap holds). Client: its shard `x` (4-bit pixels, two
per byte, base64) and `y` (label digits).

Per round the server sends client c {"k": round, "l": level, "h": width, "w": base64 float32
slice}; the client trains it for `epochs` passes of per-sample SGD at rate `lr`, the scaler
1/rate on the hidden activations, and replies {"c", "l", "h", "n": samples, "loss", "ms", "w"}.
Parameters no reply holds (no client of that level answered) keep their value. After each
aggregation the server emits a `model` event (round, global model, each client's level, the
clients aggregated, bytes of a slice per level, each reply's local training time `ms` on its
client's clock): the host evaluates the model from it.
Result: server {"w": final global model, "hidden", "rounds"}; client {"level", "h", "params",
"n", "loss", "bytes" (its reply's model text)} of its last round: the same in a replay (the
training time, which is not, is in the `model` events)."""
from flhil import mlp
from flhil.apps.common import Rng

PAYLOAD = "json"  # its messages are objects with the model as text (wire.check_payload)
ARGS = {"iterations": 5, "epochs": 2, "lr": 0.01, "hidden": 128}  # the arguments, with defaults
METRIC = "server: mean training loss of the replies; clients: training loss"  # what round_end.v is
D_IN = 64
D_OUT = 10


def draw_level(seed, rnd, client, mix, cap):
    """A dynamic round's level of a client: drawn from mix [[level, weight], ...] by
    Rng(seed, LEVEL_STREAM, round, client), never wider than `cap`."""
    total = 0
    for _, weight in mix:
        total += weight
    pick = Rng(seed, mlp.LEVEL_STREAM, rnd, client).below(total)
    level = mix[-1][0]
    for lv, weight in mix:
        if pick < weight:
            level = lv
            break
        pick -= weight
    if cap is not None and mlp.SHIFT[level] < mlp.SHIFT[cap]:
        level = cap
    return level


def _server(node, cfg, hidden):
    levels = cfg.get("levels") or {}
    mix = cfg.get("mix")
    dynamic = cfg.get("dynamic", False)
    state = {"k": -1, "slices": {}, "lv": {}}

    def downlink(c, k, w):
        if k != state["k"]:
            state["k"] = k
            state["slices"] = {}
            state["lv"] = {}
        cap = levels.get(str(c), "a")
        level = draw_level(node.seed, k, c, mix, cap) if dynamic else cap
        state["lv"][str(c)] = level
        text = state["slices"].get(level)
        if text is None:
            h = mlp.width(hidden, level)
            text = state["slices"][level] = mlp.encode(mlp.slice_model(w, D_IN, hidden, D_OUT, h))
        return {"k": k, "l": level, "h": mlp.width(hidden, level), "w": text}

    def server_cb(priv, msgs):
        agg = mlp.Overlap(D_IN, hidden, D_OUT)
        got = []
        ms = {}
        loss = 0.0
        for m in msgs:
            agg.add(mlp.decode(m["w"]), m["h"])
            got.append(m["c"])
            ms[str(m["c"])] = m.get("ms")
            loss += m["loss"]
        model[0] = agg.result(model[0])
        sizes = {}
        for level in state["slices"]:
            sizes[level] = len(state["slices"][level])
        state["loss"] = loss / len(msgs) if msgs else None
        node.tel.emit("model", i=state["k"], w=mlp.encode(model[0]), lv=state["lv"], got=got, bytes=sizes,
                      ms=ms)
        return model[0]

    model = [mlp.init_model(node.seed, D_IN, hidden, D_OUT)]
    node.downlink = downlink
    node.metric = lambda w: state.get("loss")
    return server_cb, model[0]


async def run(node, args):
    iterations = args.get("iterations", ARGS["iterations"])
    epochs = args.get("epochs", ARGS["epochs"])
    lr = args.get("lr", ARGS["lr"])
    hidden = args.get("hidden", ARGS["hidden"])
    cfg = node.cfg.get("heterofl") or {}
    if node.id == node.server:
        server_cb, w0 = _server(node, cfg, hidden)
        w = await node.fl_centralized(server_cb, None, w0, None, iterations)
        if w is None:
            return None
        return {"w": mlp.encode(w), "hidden": hidden, "rounds": iterations}

    import binascii
    packed = binascii.a2b_base64(cfg.get("x", ""))
    labels = cfg.get("y", "").encode()
    cfg["x"] = cfg["y"] = None  # the run config's copy is no longer needed: free its heap

    def client_cb(last, priv, msg):
        level, h = msg["l"], msg["h"]
        w = mlp.decode(msg["w"])
        msg["w"] = None  # the received text: freed before training (a board's heap)
        t0 = node.clock.now_us()
        loss = mlp.train(w, D_IN, h, D_OUT, 1.0 / mlp.rate(level), packed, labels, lr, epochs,
                         node.seed, node.id, msg["k"])
        ms = (node.clock.now_us() - t0) // 1000
        text = mlp.encode(w)
        w = None
        return {"c": node.id, "l": level, "h": h, "n": len(labels), "loss": loss, "ms": ms, "w": text}

    def metric(reply):
        # runs when the round ends, after the reply went out (node.py sends, then reports): the
        # model text is dropped from the reply the node keeps, so a board does not hold it
        # through the next round's receive
        text = reply.get("w")
        if text is not None:
            reply["w"] = None
            reply["bytes"] = len(text)
        return reply.get("loss")

    node.metric = metric
    last = await node.fl_centralized(None, client_cb, {"loss": None}, None, iterations)
    if last is None:
        return None
    if last.get("l") is None:
        return {"level": cfg.get("level"), "n": len(labels), "loss": None}
    return {"level": last["l"], "h": last["h"], "params": mlp.param_count(D_IN, last["h"], D_OUT),
            "n": last["n"], "loss": last["loss"], "bytes": last.get("bytes")}
