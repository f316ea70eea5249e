# The ODTS mock-up in MPT-FLA's style: blocks of TDM slots, each node pairs with one peer per slot
# (the id list rotated by one before every slot) and averages its state with the peer's reading.
from flhil.mptfla import *


def peer_in_slot(noNodes, nodeId, slot):
    ids = list(range(noNodes))
    for _ in range(slot + 1):
        ids = ids[1:] + ids[:1]
    k = ids.index(nodeId)
    return ids[k + 1] if k % 2 == 0 else ids[k - 1]


async def main():
    if len(sys.argv) != 6:
        print('Program usage: python odts_script.py no_nodes node_id no_blocks no_slots_per_block master_ip')
        exit()
    noNodes = int(sys.argv[1])
    nodeId = int(sys.argv[2])
    noBlocks = int(sys.argv[3])
    noSlotsPerBlock = int(sys.argv[4])
    masterIpAdr = sys.argv[5]
    ptb = PtbFla(noNodes, nodeId, 0, masterIpAdr)
    await ptb.start()
    odata = float(nodeId + 1)
    state = odata
    for block in range(noBlocks):
        for slot in range(noSlotsPerBlock):
            peer = peer_in_slot(noNodes, nodeId, slot)
            peerData = await ptb.get1Meas(peer, odata)
            state = (state + peerData) / 2
    print('final state =', state)
    del ptb
    return state


if __name__ == '__main__':
    asyncio.run(main())
    input('press any key to continue...')
