"""An answer per comparison, in numbers and in words: what the data decides, what it rules out, the
design's resolution, where the uncertainty comes from and what would sharpen it.

Pure functions on an `Evidence` (Δ, its variance split into a part that more repeats cannot lower
and a part they can, degrees of freedom). The report, each row's parent run in MLflow and the
racing summary all print `Answer.short()` (at most two short sentences: the decision, then what it
rules out or what would decide it), so they say the same thing in the same words; the technical
detail (`resolution`, `split`, `more_repeats`, `floor`) fills the report's details table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.stats import DECISION_PROB, ROPE, decide

MORE_REPEATS = 4  # the "what would sharpen it" line prices this many more repeats
MAX_EXTRA_REPEATS = 64  # beyond this many more repeats a decision is called out of reach of seeds
MAX_SPEAKER_FACTOR = 100  # the speakers line looks up to this many times today's speakers


@dataclass(frozen=True)
class Evidence:
    """Δ = row − baseline and its variance, split by what more repeats (seeds) would do to it."""
    delta: float
    floor_var: float  # the part repeats cannot lower: the speakers sampled (the corrected t: s² · n_test/n_train)
    train_var: float  # the part that shrinks as 1/repeats (training noise), at `repeats` repeats
    repeats: int
    df: float
    floor_what: str = "speakers"  # what the floor comes from, in words
    n_speakers: int = 0  # 0: not known (the floor is the correction's, not measured on speakers)
    # The method's calibration stops at `cap` repeats; past them the report states `beyond` (the corrected
    # t's evidence on the same runs), so a projection past the cap is priced with it (None: no cap).
    cap: int | None = None
    beyond: Evidence | None = None

    @property
    def var(self) -> float:
        return self.floor_var + self.train_var

    def past_cap(self, repeats: float) -> bool:
        return self.cap is not None and self.beyond is not None and repeats > self.cap

    def se_at(self, repeats: float) -> float:
        """The standard error the report would state with `repeats` repeats (math.inf: the floor alone)."""
        if self.past_cap(repeats):
            return self.beyond.se_at(repeats)
        train = 0.0 if math.isinf(repeats) else self.train_var * self.repeats / repeats
        return math.sqrt(self.floor_var + train)

    def df_at(self, repeats: float) -> float:
        return max(self.beyond.df if self.past_cap(repeats) else self.df, 1.0)

    def half_at(self, repeats: float) -> float:
        """The 95% half-width of Δ the report would state with `repeats` repeats (past a cap: the corrected t's)."""
        from scipy import stats

        return float(stats.t.ppf(0.975, self.df_at(repeats))) * self.se_at(repeats)


@dataclass(frozen=True)
class Answer:
    ev: Evidence
    rope: float
    threshold: float
    higher_better: bool
    p_better: float
    p_equivalent: float
    p_worse: float
    decision: str  # better / worse / equivalent / undecided
    low: float  # the two-sided 95% interval of Δ
    high: float
    min_effect: float  # the smallest |Δ| this design can call better or worse
    min_rope: float  # the smallest ROPE at which this Δ could be called equivalent
    extra_repeats: int | None  # more repeats that would decide it at today's Δ (None: not within MAX_EXTRA_REPEATS)
    floor_decides: bool  # some number of repeats would decide it at today's Δ (unlimited ones, or the cap's)
    # (speakers, more repeats needed too) that would decide it at today's Δ; None: not known or out of reach
    speakers_needed: tuple[int, bool] | None = None

    def ruled_out(self) -> str:
        """"rules out a gain above +0.031 and a loss larger than 0.040 (95% CI)"."""
        lo, hi = (self.low, self.high) if self.higher_better else (-self.high, -self.low)  # in gain units
        if lo > 0:  # all gain: a smaller gain is ruled out too
            parts = ["any loss", f"a gain smaller than {lo:+.3f}", f"a gain above {hi:+.3f}"]
        elif hi < 0:  # all loss
            parts = ["any gain", f"a loss smaller than {-hi:.3f}", f"a loss larger than {-lo:.3f}"]
        else:
            parts = [f"a gain above {hi:+.3f}", f"a loss larger than {-lo:.3f}"]
        return f"rules out {', '.join(parts[:-1])} and {parts[-1]} (95% CI)"

    def resolution(self) -> tuple[str, str]:
        """(the smallest |Δ| this design calls better or worse, the smallest ROPE that could call this Δ
        equivalent: "—" where the decision is better or worse), for the details table."""
        equivalent = f"±{self.min_rope:.3f}" if self.decision in ("undecided", "equivalent") else "—"
        return f"{self.min_effect:.3f}", equivalent

    def split(self) -> str:
        v = self.ev.var
        if not v > 0:
            return "no spread to split"
        share = self.ev.floor_var / v
        return f"{self.ev.floor_what} {share:.0%}, training runs {1 - share:.0%}"

    def more_repeats(self) -> str:
        """Δ's half-width with MORE_REPEATS more repeats, as the report would state it then."""
        ev = self.ev
        at = ev.repeats + MORE_REPEATS
        return f"±{ev.half_at(at):.3f}" + (f" (the corrected t: past {ev.cap} repeats)" if ev.past_cap(at) else "")

    def floor(self) -> str:
        """What the speakers alone limit Δ's half-width to, whatever the repeats (past a cap, both methods')."""
        ev = self.ev
        who = f"{ev.n_speakers} speakers" if ev.n_speakers else "the speakers sampled"
        out = f"±{1.96 * math.sqrt(ev.floor_var):.3f} ({who})"
        if ev.past_cap(math.inf):
            out += f"; the corrected t past {ev.cap} repeats: ±{1.96 * ev.se_at(math.inf):.3f}"
        return out

    def route(self) -> str:
        """What would decide the comparison at today's Δ: "" (it is decided), "repeats", "speakers" or
        "neither" (not more repeats, nor MAX_SPEAKER_FACTOR times today's speakers)."""
        if self.decision != "undecided":
            return ""
        if not self.ev.var > 0 or self.extra_repeats is not None:
            return "repeats"
        if self.speakers_needed or (not self.floor_decides and not self.ev.n_speakers):
            return "speakers"
        return "neither"

    def next_step(self) -> str:
        """What would decide it, in a few words ("" when it is decided)."""
        ev, route = self.ev, self.route()
        if route == "repeats" and not ev.var > 0:
            return "more repeats would spread the differences"
        if route == "repeats":
            k = self.extra_repeats
            return f"about {k} more repeat{'' if k == 1 else 's'} would decide it if Δ stays near {ev.delta:+.3f}"
        seeds = (f"it would take more than {MAX_EXTRA_REPEATS} more repeats" if self.floor_decides
                 else "more seeds cannot decide it")
        if route == "speakers" and self.speakers_needed:
            n, repeats_too = self.speakers_needed
            also = (f" and up to {ev.cap} repeats" if ev.cap else " and more repeats") if repeats_too else ""
            return f"{seeds}; about {n} speakers{also} could"
        if route == "speakers":
            return f"{seeds}; more speakers could"
        if route == "neither" and ev.n_speakers:
            return f"{seeds}, nor would {MAX_SPEAKER_FACTOR}x today's speakers at today's Δ"
        if route == "neither":
            return f"{seeds} at Δ {ev.delta:+.3f}"
        return ""

    def headline(self) -> str:
        probs = {"better": self.p_better, "worse": self.p_worse, "equivalent": self.p_equivalent}
        if self.decision == "undecided":
            name, p = max(probs.items(), key=lambda kv: kv[1])
            return f"undecided (ROPE ±{self.rope:g}; likeliest {name}, P {p:.2f})"
        return f"{self.decision} (P {probs[self.decision]:.2f}, ROPE ±{self.rope:g})"

    def short(self) -> str:
        """The answer in at most two short sentences, as the report, the parent run's note and racing print it:
        the decision, then what it rules out (decided) or what would decide it (undecided)."""
        if not self.ev.var > 0:
            return (f"undecided: every paired difference is the same (Δ {self.ev.delta:+.3f}), no spread to judge "
                    f"from. More repeats would spread it.")
        if self.decision != "undecided":
            return f"{self.headline()}. It {self.ruled_out()}."
        step = self.next_step()
        return f"{self.headline()}. {step[0].upper()}{step[1:]}."


def _probs(delta: float, var: float, df: float, rope: float, higher_better: bool) -> tuple[float, float, float]:
    """(P(better), P(equivalent), P(worse)) under a Student posterior of Δ (baycomp's, as the decisions)."""
    from baycomp.single import Posterior

    if rope > 0:
        left, equiv, right = Posterior(delta, var, df, rope).probs()
    else:
        (left, right), equiv = Posterior(delta, var, df, 0).probs(), 0.0
    better, worse = (right, left) if higher_better else (left, right)
    return float(better), float(equiv), float(worse)


def _decides(delta: float, var: float, df: float, rope: float, threshold: float) -> bool:
    return var > 0 and max(_probs(delta, var, df, rope, True)) >= threshold


def answer(ev: Evidence, rope: float = ROPE, threshold: float = DECISION_PROB, higher_better: bool = True) -> Answer:
    from scipy import optimize, stats

    var, df = ev.var, max(ev.df, 1.0)
    se = math.sqrt(var)
    better, equiv, worse = _probs(ev.delta, var, df, rope, higher_better) if var > 0 else (math.nan,) * 3
    # Identical differences give a posterior without spread: certainty from coincidence, no decision.
    decision = decide(better, equiv, worse, threshold) if var > 0 else "undecided"
    half = float(stats.t.ppf(0.975, df)) * se
    min_effect = rope + float(stats.t.ppf(threshold, df)) * se
    if se > 0:
        def cover(r: float) -> float:
            return float(stats.t.cdf((r - ev.delta) / se, df) - stats.t.cdf((-r - ev.delta) / se, df)) - threshold
        min_rope = float(optimize.brentq(cover, 0.0, abs(ev.delta) + 100 * se))
    else:
        min_rope = abs(ev.delta)
    extra = None
    # A floor of 0 (no speaker variance measured): unlimited repeats shrink the variance to 0, which decides.
    # Unlimited repeats reach the floor of the interval the report states there: past a cap, the corrected t's;
    # before it, the cap's own repeats may decide what that floor cannot.
    floor = ev.se_at(math.inf) ** 2
    within_cap = (ev.cap is not None and ev.repeats < ev.cap
                  and _decides(ev.delta, ev.se_at(ev.cap) ** 2, ev.df_at(ev.cap), rope, threshold))
    floor_decides = (decision != "undecided" or not floor > 0 or within_cap
                     or _decides(ev.delta, floor, 1e6, rope, threshold))
    if decision == "undecided" and floor_decides:
        extra = next((k for k in range(1, MAX_EXTRA_REPEATS + 1)
                      if _decides(ev.delta, ev.se_at(ev.repeats + k) ** 2, ev.df_at(ev.repeats + k), rope,
                                  threshold)), None)
    speakers = speakers_to_decide(ev, df, rope, threshold) if decision == "undecided" and extra is None else None
    return Answer(ev=ev, rope=rope, threshold=threshold, higher_better=higher_better, p_better=better,
                  p_equivalent=equiv, p_worse=worse, decision=decision, low=ev.delta - half, high=ev.delta + half,
                  min_effect=min_effect, min_rope=min_rope, extra_repeats=extra,
                  floor_decides=floor_decides, speakers_needed=speakers)


def speakers_to_decide(ev: Evidence, df: float, rope: float = ROPE, threshold: float = DECISION_PROB
                       ) -> tuple[int, bool] | None:
    """About how many speakers would decide the comparison at today's Δ, and whether more repeats are needed too.

    The floor is the speakers' share of Var(Δ̂) and scales as 1/S (S speakers sampled); the training runs'
    share is what today's repeats give, or (when that alone is too wide) what more repeats give: unlimited
    ones (0), or under a cap the cap's repeats (the most the method is calibrated for).
    None when the speakers are unknown or more than MAX_SPEAKER_FACTOR times today's would be needed."""
    s = ev.n_speakers
    if not s or not ev.floor_var > 0:
        return None
    most = 0.0 if ev.cap is None else ev.train_var * ev.repeats / max(ev.cap, ev.repeats)
    for train, more_repeats in ((ev.train_var, False), (most, True)):
        if more_repeats and train == ev.train_var:
            continue
        for k in range(1, 8 * int(math.log2(MAX_SPEAKER_FACTOR)) + 2):
            n = math.ceil(s * 2 ** (k / 8))
            if n > s * MAX_SPEAKER_FACTOR:
                break
            if _decides(ev.delta, ev.floor_var * s / n + train, df, rope, threshold):
                return n, more_repeats
    return None
