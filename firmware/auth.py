"""HMAC-SHA256 (RFC 2104) on hashlib.sha256, which MicroPython has; its `hmac` module it lacks.

Per-link keys (docs/design.md "Wire format", "Run config"): every unordered pair of nodes {a, b}
shares a 16-byte pair secret, derived by the harness from the run's secret and written only into
the run configs of a and b; each node derives from it the two ordered link keys K(a->b) and
K(b->a). A frame from a to b is tagged with K(a->b), so a node can sign as itself only, and only
towards the peer whose key it holds."""
import hashlib
import struct

BLOCK = 64
TAG_LEN = 32
KEY_LEN = 16  # a pair secret and a link key
_IPAD = int.from_bytes(b"\x36" * BLOCK, "big")
_OPAD = int.from_bytes(b"\x5c" * BLOCK, "big")
CACHE = 16  # link Hmacs kept (2 x 64-byte pads each); a miss rebuilds the pads (~2 us)


class Hmac:
    def __init__(self, key):
        if len(key) > BLOCK:
            key = hashlib.sha256(key).digest()
        k = int.from_bytes(key, "big") << (8 * (BLOCK - len(key)))
        self._inner = (k ^ _IPAD).to_bytes(BLOCK, "big")
        self._outer = (k ^ _OPAD).to_bytes(BLOCK, "big")

    def tag(self, msg):
        h = hashlib.sha256(self._inner)
        h.update(msg)
        inner = h.digest()
        h = hashlib.sha256(self._outer)
        h.update(inner)
        return h.digest()

    def verify(self, msg, tag):
        expected = self.tag(msg)
        if len(tag) != len(expected):
            return False
        diff = 0
        for a, b in zip(expected, tag):  # constant time: no early exit
            diff |= a ^ b
        return diff == 0


def pair_secret(run_key, a, b):
    """The secret nodes a and b share, from the run's secret (bytes). The harness calls it; a
    node calls it only when its run config holds the run's secret instead of its links
    (standalone and test runs: then any node can sign as any other)."""
    if a > b:
        a, b = b, a
    return hashlib.sha256(b"fl-hil pair\x00" + run_key + struct.pack(">HH", a, b)).digest()[:KEY_LEN]


def pair_table(run_key, node, nodes):
    """Node's pair secrets with every node, KEY_LEN bytes each in id order (its own slot zeros):
    what the run config's `links` holds, in hex."""
    out = bytearray(KEY_LEN * nodes)
    for j in range(nodes):
        if j != node:
            out[KEY_LEN * j:KEY_LEN * (j + 1)] = pair_secret(run_key, node, j)
    return bytes(out)


def link_key(pair, src, dst):
    """The ordered key of frames from src to dst."""
    return hashlib.sha256(b"fl-hil link\x00" + pair + struct.pack(">HH", src, dst)).digest()[:KEY_LEN]


class LinkKeys:
    """One node's link keys: K(node->j) to sign, K(j->node) to verify, for every other node j,
    derived once from its pair secrets (2 x 16 bytes a peer: 8 KB for 254 nodes)."""

    def __init__(self, node, nodes, pairs):
        if len(pairs) != KEY_LEN * nodes:
            raise ValueError("links: %d bytes for %d nodes, expected %d" % (len(pairs), nodes, KEY_LEN * nodes))
        self.node = node
        self.nodes = nodes
        out = bytearray(KEY_LEN * nodes)
        inn = bytearray(KEY_LEN * nodes)
        for j in range(nodes):
            if j != node:
                p = pairs[KEY_LEN * j:KEY_LEN * (j + 1)]
                out[KEY_LEN * j:KEY_LEN * (j + 1)] = link_key(p, node, j)
                inn[KEY_LEN * j:KEY_LEN * (j + 1)] = link_key(p, j, node)
        self._keys = (bytes(out), bytes(inn))
        self._cache = {}

    @classmethod
    def from_config(cls, cfg):
        import binascii
        node, nodes = cfg["node"], cfg["nodes"]
        if "links" in cfg:
            return cls(node, nodes, binascii.unhexlify(cfg["links"]))
        return cls(node, nodes, pair_table(binascii.unhexlify(cfg.get("key", "")), node, nodes))

    def _mac(self, way, j):
        c = self._cache.get(way * 65536 + j)
        if c is None:
            if len(self._cache) >= CACHE:
                self._cache = {}
            c = self._cache[way * 65536 + j] = Hmac(self._keys[way][KEY_LEN * j:KEY_LEN * (j + 1)])
        return c

    def signer(self, dst):
        """Hmac of frames this node sends to dst."""
        return self._mac(0, dst)

    def verifier(self, src):
        """Hmac of frames src sends to this node."""
        return self._mac(1, src)
