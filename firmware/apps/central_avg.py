"""Centralized averaging (upstream example 2): x_i = i + 1; the server averages the clients'
replies; each client moves halfway towards the server's model."""


ARGS = {"iterations": 1}  # the arguments this app takes, with their defaults


def server_cb(privateData, msgs):
    return sum(msgs) / len(msgs)


def client_cb(localData, privateData, msg):
    return (localData + msg) / 2


async def run(node, args):
    iterations = args.get("iterations", ARGS["iterations"])
    return await node.fl_centralized(server_cb, client_cb, float(node.id + 1), None, iterations)
