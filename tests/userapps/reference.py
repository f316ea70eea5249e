# A user's sequential reference for the test apps: the final value of each node, computed without
# any network (what `oracle = "reference.py:FUNCTION"` names in a scenario).


def central(nodes, args):
    iterations = int(args["argv"][4])
    x = [float(i + 1) for i in range(nodes)]
    for _ in range(iterations):  # each client moves halfway to the model; the server averages them
        clients = [(x[i] + x[0]) / 2 for i in range(1, nodes)]
        x = [sum(clients) / len(clients)] + clients
    return x


def decentral(nodes, args):
    iterations = int(args["argv"][3])
    x = [float(i + 1) for i in range(nodes)]
    for _ in range(iterations):
        x = [sum((x[i] + x[j]) / 2 for j in range(nodes) if j != i) / (nodes - 1) for i in range(nodes)]
    return x


def odts(nodes, args):
    blocks, slots = int(args["argv"][2]), int(args["argv"][3])
    state = [float(i + 1) for i in range(nodes)]
    odata = list(state)
    for _ in range(blocks):
        for s in range(slots):
            ids = list(range(nodes))
            for _ in range(s + 1):
                ids = ids[1:] + ids[:1]
            for k in range(0, nodes, 2):
                a, b = ids[k], ids[k + 1]
                state[a], state[b] = (state[a] + odata[b]) / 2, (state[b] + odata[a]) / 2
    return state


def getmeas(nodes, args):
    # the last of the three cases: a star around node 0
    return [[1.0 + p for p in range(1, nodes)]] + [[1.0]] * (nodes - 1)


def fedmean(nodes, args):
    means = []
    for node in range(1, nodes):
        above = [float(node + k) for k in range(4) if node + k > 2.0]
        means.append(sum(above) / len(above))
    server = sum(means) / len(means)
    return [server] + means
