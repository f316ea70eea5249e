"""The HeteroFL MLP (flhil.mlp) and the heterofl app's level draw, the same on CPython and on
MicroPython (tests/firmware/mprun.py runs this module under the unix port with a 192 KB heap)."""
import binascii

from flhil import mlp
from flhil.apps import heterofl

# 6 samples of 8 inputs (4-bit pixels, two per byte) and their labels, 3 classes
PACKED = binascii.unhexlify("0f3c00a1" "5500ff10" "1200c3f0" "0000ab0c" "f0f00f0f" "9a00003b")
LABELS = b"012120"
D, H, O = 8, 8, 3


def _model(seed=3):
    return mlp.init_model(seed, D, H, O)


def test_levels_widths_and_rates():
    assert [mlp.width(128, lv) for lv in mlp.LEVELS] == [128, 64, 32, 16, 8]
    assert [mlp.width(10, lv) for lv in mlp.LEVELS] == [10, 5, 3, 2, 1]  # ceil(rate x width)
    assert mlp.rate("e") == 0.0625
    assert mlp.param_count(64, 128, 10) == 9610


def test_slice_is_the_index_prefix_of_the_hidden_layer():
    w = _model()
    sub = mlp.slice_model(w, D, H, O, 2)
    assert len(sub) == mlp.param_count(D, 2, O)
    assert list(sub[:2 * D]) == list(w[:2 * D])              # W1: units 0, 1
    assert list(sub[2 * D:2 * D + 2]) == list(w[H * D:H * D + 2])  # b1
    for k in range(O):                                        # W2: columns 0, 1 of every row
        row = H * D + H + k * H
        assert list(sub[2 * D + 2 + 2 * k:2 * D + 2 + 2 * k + 2]) == list(w[row:row + 2])
    assert list(sub[-O:]) == list(w[-O:])                      # b2 whole


def test_overlap_averages_holders_and_keeps_the_rest():
    w = _model()
    agg = mlp.Overlap(D, H, O)
    wide = mlp.slice_model(w, D, H, O, 4)
    narrow = mlp.slice_model(w, D, H, O, 2)
    for k in range(len(wide)):
        wide[k] = 1.0
    for k in range(len(narrow)):
        narrow[k] = 3.0
    agg.add(wide, 4)
    agg.add(narrow, 2)
    out = agg.result(w)
    assert out[0] == 2.0 and out[2 * D - 1] == 2.0      # units 0, 1: both replies
    assert out[2 * D] == 1.0 and out[4 * D - 1] == 1.0  # units 2, 3: the wide one only
    assert list(out[4 * D:H * D]) == list(w[4 * D:H * D])  # units 4..7: nobody, unchanged
    assert out[-1] == 2.0                                # output bias: every reply


def test_no_reply_keeps_the_model():
    w = _model()
    assert list(mlp.Overlap(D, H, O).result(w)) == list(w)


def test_encode_round_trip():
    for w in (_model(), mlp.init_model(1, 64, 16, 10), mlp.zeros(1), mlp.zeros(2)):
        text = mlp.encode(w)  # the 64-16-10 model's text is several decode slices long
        assert "\n" not in text and len(text) == 4 * ((4 * len(w) + 2) // 3)
        assert list(mlp.decode(text)) == list(w)


def test_training_lowers_the_loss_and_gives_the_same_numbers_everywhere():
    w = mlp.slice_model(_model(), D, H, O, 4)
    first = mlp.train(w, D, 4, O, 2.0, PACKED, LABELS, 0.05, 1, 1, 1, 0)
    later = first
    for r in range(1, 20):
        later = mlp.train(w, D, 4, O, 2.0, PACKED, LABELS, 0.05, 1, 1, 1, r)
    assert later < first, (first, later)
    # a checksum of the trained weights: CPython and MicroPython's unix port (both double
    # arithmetic over float32 storage) must agree
    total = 0.0
    for k in range(len(w)):
        total += w[k] * (k % 7 + 1)
    assert abs(total - CHECKSUM) < 1e-5, total


CHECKSUM = -2.1031875610351562  # from a CPython run; MicroPython must give the same


def test_sample_order_is_a_seeded_permutation():
    a = mlp.sample_order(1, 2, 3, 0, 50)
    assert sorted(a) == list(range(50))
    assert a == mlp.sample_order(1, 2, 3, 0, 50) and a != mlp.sample_order(1, 2, 3, 1, 50)


def test_dynamic_draw_follows_the_mix_and_the_cap():
    mix = [["a", 1], ["e", 3]]
    drawn = [heterofl.draw_level(7, r, 1, mix, "a") for r in range(400)]
    assert set(drawn) == {"a", "e"} and 60 < drawn.count("a") < 140
    assert set(heterofl.draw_level(7, r, 1, mix, "d") for r in range(50)) <= {"d", "e"}


async def test_the_server_sends_each_client_its_slice_and_aggregates_by_overlap():
    import fwkit
    # three nodes in one process, each model event and reply kept by the test: more than a 192 KB
    # heap holds beside the test modules (on a board each node has its own heap)
    fwkit.need_heap(3, per_node=45000)
    shard = binascii.b2a_base64(bytes(range(0, 256, 4)), newline=False).decode()  # 2 samples, 64 pixels
    cfgs = fwkit.configs("heterofl_slices", 3, "heterofl", {"iterations": 2, "hidden": 8, "epochs": 1},
                         timing={"round_ms": 2000, "recv_ms": 4000})
    cfgs[0]["heterofl"] = {"levels": {"1": "a", "2": "e"}, "dynamic": False}
    for cfg in cfgs:
        cfg["payload"] = heterofl.PAYLOAD  # what the harness writes for this app
    for i in (1, 2):
        cfgs[i]["heterofl"] = {"x": shard, "y": "37", "level": "ae"[i - 1]}
    r = await fwkit.run(cfgs, timeout_s=20)
    assert [r.status(i) for i in range(3)] == ["ok"] * 3, r.errors()
    wide, narrow = r.result(1), r.result(2)
    assert (wide["h"], narrow["h"]) == (8, 1) and narrow["params"] == mlp.param_count(64, 1, 10)
    assert narrow["bytes"] < wide["bytes"] and wide["n"] == 2
    models = r.ev(0, "model")
    assert [m["i"] for m in models] == [0, 1] and models[-1]["got"] == [1, 2]
    assert models[-1]["lv"] == {"1": "a", "2": "e"}
    assert len(mlp.decode(r.result(0)["w"])) == mlp.param_count(64, 8, 10)
