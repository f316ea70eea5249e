"""A judged run: run, analyse, and when the verdict is *inconclusive: host overloaded* (every failure
coincides with host stalls, results/host.py), settle it instead of reporting an algorithm failure:

1. replay the run in virtual time with its injected faults only (its recorded schedule, on an idle
   host): if that fails too, the failure is the algorithm's, whatever the host did: a failure;
2. else run it again in real time, at most `reruns` times, until a verdict is conclusive.

A run that stays inconclusive is reported as such, with the evidence of every attempt. Callers:
the plugin (an inconclusive item is skipped with the evidence), `fl-hil run`."""
import contextlib

from flhil.harness.run import pipeline
from flhil.harness.run.replay import replay

DEFAULT_RERUNS = 2
IDLE_REPLAY_WALL_S = 120.0


def _no_step(_name):
    return contextlib.nullcontext()


class Judged:
    """The attempts of a judged run: [(record, verdict)], the last one deciding."""

    def __init__(self):
        self.attempts = []

    @property
    def record(self):
        return self.attempts[-1][0]

    @property
    def verdict(self):
        return self.attempts[-1][1]


def run_judged(spec, backend, expect, clean=(), reruns=DEFAULT_RERUNS, name=None, step=None):
    """Run `spec` on `backend` and judge it on `expect`, settling an inconclusive verdict as the
    module's doc says. Returns a `Judged`."""
    step = step or _no_step
    judged = Judged()
    record = pipeline.execute(spec, backend, name=name, step=step)
    verdict = pipeline.analyse(record, expect, spec, clean=clean, step=step)
    judged.attempts.append((record, verdict))
    if verdict.outcome != "inconclusive":
        return judged
    idle = _idle_verdict(record, expect, spec, clean, step)
    if idle is not None and not idle.ok:
        verdict.inconclusive = False
        verdict.notes.append("host stalls coincided with the failures, but the run replayed in virtual time "
                             "without them (injected faults only) fails too: %s"
                             % "; ".join(str(f) for f in idle.failures))
        pipeline.keep_verdict(record, expect, verdict)
        return judged
    if idle is not None:
        verdict.notes.append("replayed in virtual time without the host's stalls (injected faults only), "
                             "the run passes")
        pipeline.keep_verdict(record, expect, verdict)
    for k in range(reruns):
        with step("re-run %d of %d in real time: the last attempt was inconclusive (host overloaded)"
                  % (k + 1, reruns)):
            record = pipeline.execute(spec, backend, name="%s-rerun%d" % (name or spec.app, k + 1), step=step)
            verdict = pipeline.analyse(record, expect, spec, clean=clean, step=step)
        judged.attempts.append((record, verdict))
        if verdict.outcome != "inconclusive":
            break
    earlier = judged.attempts[:-1]
    verdict.notes.append("attempt %d of %d; before it: %s" % (
        len(judged.attempts), reruns + 1, "; ".join("run %s inconclusive (%s)" % (r.run_id, v.evidence[0] if
                                                                                    v.evidence else "host stalls")
                                                    for r, v in earlier)))
    if idle is not None and verdict.outcome == "inconclusive":
        verdict.notes.append("its replay without the host's stalls passes: the algorithm is not shown wrong")
    pipeline.keep_verdict(record, expect, verdict)
    return judged


def _idle_verdict(record, expect, spec, clean, step):
    """The verdict of the record replayed in virtual time with its injected faults only, or None
    when it cannot be replayed (a partial record, an app that does not run in-process)."""
    with step("replay in virtual time without the host's stalls (injected faults only)"):
        try:
            result = replay(record, timing=False, max_wall_s=IDLE_REPLAY_WALL_S)
        except Exception:  # noqa: BLE001 - a replay that cannot run only loses this piece of evidence
            return None
        if result.new.data.get("stopped") == "wall_limit":
            return None
        return pipeline.verdict_of(result.new, expect, spec, clean)
