"""Decentralized averaging (upstream example 3) on a complete graph: every node averages the
midpoints between itself and each neighbour, x_i' = x_i/2 + (S - x_i)/(2(n-1)). The callbacks are
centralized averaging's (upstream uses the same two): the server callback averages what came, the
client callback takes the midpoint."""
from flhil.apps.central_avg import ARGS, client_cb, server_cb  # noqa: F401 - this app's callbacks too


async def run(node, args):
    iterations = args.get("iterations", ARGS["iterations"])
    return await node.fl_decentralized(server_cb, client_cb, float(node.id + 1), None, iterations)
