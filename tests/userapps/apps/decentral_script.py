# Decentralized averaging in MPT-FLA's style: each node averages its value with its peers' replies.
from flhil.mptfla import *


def server_cb(privateData, msgs):
    return sum(msgs) / len(msgs)


def client_cb(localData, privateData, msg):
    return (localData + msg) / 2


async def main():
    if len(sys.argv) != 5:
        print('Program usage: python decentral_script.py no_nodes node_id master_ip no_iterations')
        exit()
    noNodes = int(sys.argv[1])
    nodeId = int(sys.argv[2])
    masterIpAdr = sys.argv[3]
    noIterations = int(sys.argv[4])
    ptb = PtbFla(noNodes, nodeId, 0, masterIpAdr)
    await ptb.start()
    localData = float(nodeId + 1)
    localData = await ptb.fl_decentralized(server_cb, client_cb, localData, None, noIterations)
    print('final localData =', localData)
    del ptb


if __name__ == '__main__':
    asyncio.run(main())
    input('press any key to continue...')
