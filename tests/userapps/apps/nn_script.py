# A small neural network trained with numpy on PC nodes, in MPT-FLA's style: the server averages
# the clients' models (one message carries the whole model: ~1,900 floats, tens of KB of JSON).
import numpy as np

from flhil.mptfla import *

HIDDEN = 24
FEATURES = 64
CLASSES = 10


def init_model(seed):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((FEATURES, HIDDEN)) * 0.1).tolist(), [0.0] * HIDDEN,
            (rng.standard_normal((HIDDEN, CLASSES)) * 0.1).tolist(), [0.0] * CLASSES]


def local_data(nodeId, n=60):
    rng = np.random.default_rng(100 + nodeId)
    x = rng.standard_normal((n, FEATURES))
    y = (x[:, :CLASSES].argmax(axis=1))
    return x, y


def train(model, x, y, epochs=20, lr=0.5):
    w1, b1, w2, b2 = (np.array(p) for p in model)
    for _ in range(epochs):
        h = np.maximum(0, x @ w1 + b1)
        z = h @ w2 + b2
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        g2 = h.T @ p / len(y)
        gh = (p @ w2.T) * (h > 0)
        g1 = x.T @ gh / len(y)
        w2 -= lr * g2
        b2 -= lr * p.mean(axis=0)
        w1 -= lr * g1
        b1 -= lr * gh.mean(axis=0)
    return [w1.tolist(), b1.tolist(), w2.tolist(), b2.tolist()]


def accuracy(model, x, y):
    w1, b1, w2, b2 = (np.array(p) for p in model)
    return float(((np.maximum(0, x @ w1 + b1) @ w2 + b2).argmax(axis=1) == y).mean())


def server_cb(privateData, msgs):
    return [np.mean([np.array(m[k]) for m in msgs], axis=0).tolist() for k in range(4)]


def client_cb(localData, privateData, msg):
    x, y = privateData
    return train(msg, x, y)


async def main():
    if len(sys.argv) != 6:
        print('Program usage: python nn_script.py no_nodes node_id fl_server_id master_ip no_iterations')
        exit()
    noNodes = int(sys.argv[1])
    nodeId = int(sys.argv[2])
    flSrvId = int(sys.argv[3])
    masterIpAdr = sys.argv[4]
    noIterations = int(sys.argv[5])
    ptb = PtbFla(noNodes, nodeId, flSrvId, masterIpAdr)
    await ptb.start()
    data = local_data(nodeId)
    model = init_model(0)
    model = await ptb.fl_centralized(server_cb, client_cb, model, data, noIterations)
    x, y = local_data(999, 300)
    acc = accuracy(model, x, y)
    print('node', nodeId, 'test accuracy', acc)
    del ptb
    return acc


if __name__ == '__main__':
    asyncio.run(main())
    input('press any key to continue...')
