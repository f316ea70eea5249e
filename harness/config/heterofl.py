"""The `[heterofl]` table of a scenario (and a run spec's `heterofl`): which complexity level each
client trains, fixed or re-drawn per round, and how the digits data are dealt.

    [heterofl]
    levels = "a1-b1-e2"     # a mix: proportions of the clients per level (a = 1 ... e = 1/16)
    # levels = {1 = "a", 2 = "e"}   # or per client; clients not named get their node kind's level
    dynamic = false         # true: every round each client's level is drawn from the mix
    # caps = {0 = "d"}      # dynamic: the widest level a client may draw (default: its node kind's)
    split = "iid"           # or "noniid": each client holds `classes` labels
    classes = 2
    samples = 100           # cap on a client's shard

Without `levels` every client gets its node kind's default: a PC level a, a board the widest
level whose measured peak heap fits the board's heap (flhil.harness.run.heterofl.budget_level)."""
import re
from typing import Annotated, Union

from pydantic import Field

from flhil.harness.config.model import ConfigModel, Expect, Int, OneOf
from flhil.mlp import LEVELS

MIX = re.compile(r"^([a-e][0-9]+)(-[a-e][0-9]+)*$")
LEVEL_PHRASE = "a level: " + ", ".join('"%s"' % lv for lv in LEVELS)


def parse_mix(text):
    """[(level, weight)] of a mix like "a1-b1-e2", widest level first; ValueError on a bad one."""
    if not isinstance(text, str) or not MIX.match(text):
        raise ValueError('expected a level mix like "a1-b1-e2" (levels a..e, each with a whole-number '
                         'weight, joined by "-"), got %r' % (text,))
    weights = {}
    for part in text.split("-"):
        level, weight = part[0], int(part[1:])
        if level in weights:
            raise ValueError("level %s appears twice in the mix %r" % (level, text))
        weights[level] = weight
    if not any(weights.values()):
        raise ValueError("the mix %r gives every level weight 0" % text)
    return [(lv, weights[lv]) for lv in LEVELS if weights.get(lv)]


Levels = Annotated[Union[Annotated[str, Field(strict=True)], dict[str, Annotated[str, Field(strict=True)]]],
                   Expect('a level mix like "a1-b1-e2" or a table {client id = level}')]


class HeteroFLConfig(ConfigModel):
    levels: Levels | None = Field(
        None, description='a level mix like "a1-b1-e2", or {client id = level}; default: per node kind')
    dynamic: Annotated[bool, Field(description="re-draw each client's level from the mix every round")] = False
    caps: Annotated[dict[str, Annotated[str, Field(strict=True)]], Expect("a table {client id = level}")] \
        | None = Field(None, description="dynamic: the widest level a client may draw; default: its node kind's")
    split: OneOf(("iid", "noniid"), description="how the digits are dealt: IID or label-skewed") = "iid"
    classes: Int(1, 10, description="labels per client when split = \"noniid\"") = 2
    samples: Int(1, 1347, description="most samples in a client's shard") = 100

    def check(self, at, ctx):
        here = at / "levels"
        if isinstance(self.levels, str):
            try:
                parse_mix(self.levels)
            except ValueError as exc:
                here.fail(str(exc))
        elif isinstance(self.levels, dict):
            if self.dynamic:
                (at / "dynamic").fail('dynamic levels are drawn from a mix: give levels = "a1-e1" style, '
                                      "not a table per client")
            _check_level_map(self.levels, here, ctx)
        elif self.dynamic:
            (at / "dynamic").fail('dynamic levels need a mix: levels = "a1-b1-e1", say')
        if self.caps is not None:
            if not self.dynamic:
                (at / "caps").fail("caps bound the levels a dynamic mix draws: give levels per client instead")
            _check_level_map(self.caps, at / "caps", ctx)


def _check_level_map(levels, here, ctx):
    n, server = ctx.get("nodes"), ctx.get("server")
    for key in levels:
        if not key.isdigit():
            (here / key).fail("expected a client id (an integer) as the key, got %r" % key)
        node = int(key)
        if n is not None and node >= n:
            (here / key).fail("expected a node id from 0 to %d, got %d" % (n - 1, node))
        if levels[key] not in LEVELS:
            (here / key).fail("expected %s, got %r" % (LEVEL_PHRASE, levels[key]))
        if server is not None and node == server:
            (here / key).fail("node %d is the server: it trains nothing, give levels to clients" % node)
