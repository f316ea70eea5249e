# Centralized averaging in MPT-FLA's style: x_i = i + 1, the server averages, clients move halfway.
from flhil.mptfla import *


def server_cb(privateData, msgs):
    return sum(msgs) / len(msgs)


def client_cb(localData, privateData, msg):
    return (localData + msg) / 2


async def main():
    if len(sys.argv) != 6:
        print('Program usage: python central_script.py no_nodes node_id fl_server_id master_ip no_iterations')
        exit()
    noNodes = int(sys.argv[1])
    nodeId = int(sys.argv[2])
    flSrvId = int(sys.argv[3])
    masterIpAdr = sys.argv[4]
    noIterations = int(sys.argv[5])
    ptb = PtbFla(noNodes, nodeId, flSrvId, masterIpAdr)
    await ptb.start()
    localData = float(nodeId + 1)
    localData = await ptb.fl_centralized(server_cb, client_cb, localData, None, noIterations)
    print('final localData =', localData)
    del ptb


if __name__ == '__main__':
    asyncio.run(main())
    input('press any key to continue...')
