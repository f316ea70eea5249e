"""Decentralized averaging (upstream example 3) on a complete graph: every node averages the
midpoints between itself and each neighbour, x_i' = x_i/2 + (S - x_i)/(2(n-1))."""


ARGS = {"iterations": 1}  # the arguments this app takes, with their defaults


def server_cb(privateData, msgs):
    return sum(msgs) / len(msgs)


def client_cb(localData, privateData, msg):
    return (localData + msg) / 2


async def run(node, args):
    iterations = args.get("iterations", ARGS["iterations"])
    return await node.fl_decentralized(server_cb, client_cb, float(node.id + 1), None, iterations)
