# Federated mean with thresholds, written the way MPT-FLA's examples are (centralized, one iteration)
from flhil.mptfla import *


def server_cb(privateData, msgs):
    # mean of the clients' local means
    return sum(msgs) / len(msgs)


def client_cb(localData, privateData, msg):
    # the client's mean of its readings above the server's threshold
    above = [x for x in privateData if x > msg]
    return sum(above) / len(above) if above else 0.0


async def main():
    if len(sys.argv) != 5:
        print('Program usage: python fedmean_script.py no_nodes node_id fl_server_id master_ip')
        exit()
    noNodes = int(sys.argv[1])
    nodeId = int(sys.argv[2])
    flSrvId = int(sys.argv[3])
    masterIpAdr = sys.argv[4]
    ptb = PtbFla(noNodes, nodeId, flSrvId, masterIpAdr)
    await ptb.start()
    threshold = 2.0
    readings = [float(nodeId + k) for k in range(4)]
    if nodeId == flSrvId:
        localData = threshold
    else:
        localData = 0.0
    localData = await ptb.fl_centralized(server_cb, client_cb, localData, readings)
    print('final localData =', localData)
    del ptb
    time.sleep(1)


if __name__ == '__main__':
    asyncio.run(main())
    input('press any key to continue...')
