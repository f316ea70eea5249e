"""getMeas on a topology (upstream example 8): every node exchanges 1.0 + id with its neighbours
for a number of slots; the result per slot must equal [1.0 + p for p in peers]."""

ARGS = {"topology": "complete", "slots": 1}  # the arguments this app takes, with their defaults


def neighbours(topology, n, me):
    if topology == "ring":
        return sorted(set([(me - 1) % n, (me + 1) % n]) - set([me]))
    if topology == "star":
        return list(range(1, n)) if me == 0 else [0]
    if topology == "line":
        return [p for p in (me - 1, me + 1) if 0 <= p < n]
    return [p for p in range(n) if p != me]  # complete


async def run(node, args):
    peers = neighbours(args.get("topology", ARGS["topology"]), node.n, node.id)
    results = []
    for _ in range(args.get("slots", ARGS["slots"])):
        results.append(await node.getMeas(peers, 1.0 + node.id))
    return {"peers": peers, "slots": results}
