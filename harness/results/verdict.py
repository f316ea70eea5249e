"""What a run's checks found: `Finding`s, the `Verdict` of a run, and how values compare.

Tolerances (values_match): the rp2 port computes in single precision, PCs in double.
An expected value exactly representable in single precision (a short dyadic such as 1.75 or
1.74951171875) must match exactly: both precisions compute it without rounding. Any other value
must agree to a relative 1e-6 (a few float32 ulps; averaging contracts rounding errors, so they
do not grow with the rounds). Integers and non-numbers compare exactly.
"""
from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass, field

DEFAULT_REL = 1e-6


class ExpectationFailed(AssertionError):
    """Some expectations of a run failed; `verdict` holds every finding."""

    def __init__(self, message, verdict=None):
        super().__init__(message)
        self.verdict = verdict


class HostOverloaded(Exception):
    """The run's failures all coincide with host stalls: it says nothing about the algorithm
    (verdict *inconclusive: host overloaded*); `verdict` holds the findings and the evidence."""

    def __init__(self, message, verdict=None):
        super().__init__(message)
        self.verdict = verdict


INCONCLUSIVE = "inconclusive: host overloaded"


@dataclass
class Finding:
    check: str
    ok: bool
    node: int | None = None
    round: int | None = None
    expected: object = None
    got: object = None
    message: str = ""

    def __str__(self):
        where = []
        if self.node is not None:
            where.append("node %s" % self.node)
        if self.round is not None:
            where.append("round %s" % self.round)
        text = "%s %s" % ("PASS" if self.ok else "FAIL", self.check)
        if where:
            text += " (" + ", ".join(where) + ")"
        if self.expected is not None or self.got is not None:
            text += ": expected %s, got %s" % (fmt_value(self.expected), fmt_value(self.got))
        if self.message:
            text += "; " + self.message
        return text


@dataclass
class Verdict:
    """The findings of a run and its outcome: "pass", "fail", or "inconclusive" (every failure
    coincides with host stalls: `evidence` says which node lost how much time, when)."""
    findings: list = field(default_factory=list)
    seed: object = None
    run: object = None
    inconclusive: bool = False
    evidence: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # what re-runs and replays showed

    @property
    def failures(self):
        return [f for f in self.findings if not f.ok]

    @property
    def ok(self):
        return not self.failures

    @property
    def outcome(self):
        if self.ok:
            return "pass"
        return "inconclusive" if self.inconclusive else "fail"

    def summary(self) -> str:
        head = "run %s, seed=%s: %d checks, %d failed" % (
            self.run, self.seed, len(self.findings), len(self.failures))
        if self.inconclusive:
            head += "; " + INCONCLUSIVE
        lines = [head] + ["  " + str(f) for f in self.findings]
        lines += ["  evidence: " + e for e in self.evidence] + ["  " + n for n in self.notes]
        return "\n".join(lines)

    def to_dict(self):
        return {"seed": self.seed, "run": self.run, "ok": self.ok, "outcome": self.outcome,
                "findings": [asdict(f) for f in self.findings], "evidence": list(self.evidence),
                "notes": list(self.notes)}

    def raise_if_failed(self):
        """ExpectationFailed for a failed run, HostOverloaded for an inconclusive one."""
        if self.ok:
            return
        if self.inconclusive:
            lines = ["%s (run %s): %d failure(s), each at a moment the host stalled its nodes:"
                     % (INCONCLUSIVE, self.run, len(self.failures))]
            lines += ["  " + str(f) for f in self.failures]
            lines += ["  evidence: " + e for e in self.evidence] + ["  " + n for n in self.notes]
            raise HostOverloaded("\n".join(lines), self)
        lines = ["%d expectation(s) failed (run %s):" % (len(self.failures), self.run)]
        lines += ["  " + str(f) for f in self.failures]
        lines += ["  " + n for n in self.notes]
        lines.append("replay with seed=%s" % self.seed)
        raise ExpectationFailed("\n".join(lines), self)


# ------------------------------------------------------------------ value comparison

def is_single_exact(x) -> bool:
    """True if the float is exactly representable in IEEE single precision."""
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0] == x
    except (OverflowError, struct.error):
        return False


def values_match(expected, got, rel=DEFAULT_REL) -> bool:
    """Compare nested lists/dicts of numbers with the module's tolerance rules."""
    if isinstance(expected, (list, tuple)):
        return (isinstance(got, (list, tuple)) and len(got) == len(expected)
                and all(values_match(e, g, rel) for e, g in zip(expected, got)))
    if isinstance(expected, dict):
        return (isinstance(got, dict) and set(map(str, got)) == set(map(str, expected))
                and all(values_match(v, got.get(k, got.get(str(k))), rel) for k, v in expected.items()))
    if isinstance(expected, bool) or not isinstance(expected, (int, float)):
        return expected == got
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return False
    if isinstance(expected, int) or is_single_exact(float(expected)):
        return float(got) == float(expected)
    return math.isclose(got, expected, rel_tol=rel, abs_tol=1e-12)


# ------------------------------------------------------------------ helpers

def fmt_value(x):
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, (list, tuple)) and len(x) > 12:
        return "[%s, ... %d items]" % (", ".join(fmt_value(v) for v in x[:12]), len(x))
    return str(x)


