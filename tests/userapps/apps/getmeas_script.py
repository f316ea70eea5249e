# getMeas in MPT-FLA's style: three test cases in one process, each with its own PtbFla.
from flhil.mptfla import *


async def case(noNodes, nodeId, masterIpAdr, peers):
    ptb = PtbFla(noNodes, nodeId, 0, masterIpAdr)
    await ptb.start()
    got = await ptb.getMeas(peers, 1.0 + nodeId)
    print('case peers', peers, 'got', got)
    del ptb
    return got


async def main1(noNodes, nodeId, masterIpAdr):  # complete graph
    return await case(noNodes, nodeId, masterIpAdr, [p for p in range(noNodes) if p != nodeId])


async def main2(noNodes, nodeId, masterIpAdr):  # ring
    return await case(noNodes, nodeId, masterIpAdr, [(nodeId - 1) % noNodes, (nodeId + 1) % noNodes])


async def main3(noNodes, nodeId, masterIpAdr):  # star around node 0
    return await case(noNodes, nodeId, masterIpAdr, [p for p in range(1, noNodes)] if nodeId == 0 else [0])


if __name__ == '__main__':
    if len(sys.argv) != 4:
        print('Program usage: python getmeas_script.py no_nodes node_id master_ip')
        exit()
    noNodes = int(sys.argv[1])
    nodeId = int(sys.argv[2])
    masterIpAdr = sys.argv[3]
    asyncio.run(main1(noNodes, nodeId, masterIpAdr))
    time.sleep(1)
    asyncio.run(main2(noNodes, nodeId, masterIpAdr))
    time.sleep(1)
    asyncio.run(main3(noNodes, nodeId, masterIpAdr))
    input('press any key to continue...')
