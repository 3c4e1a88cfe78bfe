"""The turn policy: when a voice agent ends the user's turn, and when it may start its reply early.

One frozen config, validated here and nowhere else, nested in every config that runs an agent
(`pipeline.runtime.runner.PipelineConfig.policy`, the bench's manual policy, the demo's settings) and
read from evaluated operating points (`TurnPolicy.from_operating_point`).

During a silence the policy fires at the first moment with silence >= `action_delay_s` and
p_eot >= `threshold`, or at `timeout_s` (the harness's definition, `metrics.policy_outcome`, which
sweeps the same three numbers on the 0.1 s grid). VAD-only is the special case p_eot = 1 with
action delay = timeout = `stop_silence_s` (`vad_only`).

Preemptive start (one meaning): the LLM starts generating, held and unheard, when p_eot >=
`preemptive_fraction` x threshold; the decision releases it, speech discards it. For VAD-only
(threshold 0) that is the moment the transcript is in, so a VAD-only agent with a preemptive start
generates during its own `stop_silence_s` as a strong baseline should.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from vad_turn.core.config import require_range
from vad_turn.core.schema import DEFAULT_TRANSCRIPT_LAG_S


@dataclass(frozen=True)
class TurnPolicy:
    """threshold: p_eot in [0, 1] (None: the detector's default, `resolve`); every *_s is seconds of silence."""

    threshold: float | None = field(default=None, metadata={
        "help": "p_eot threshold in [0, 1] ('none': the detector's default)"})
    action_delay_s: float = field(default=0.2, metadata={"help": "minimum silence before the detector may end the turn"})
    timeout_s: float = field(default=1.5, metadata={"help": "end the turn after this much silence anyway"})
    preemptive_fraction: float | None = field(default=0.1, metadata={
        "help": "start the reply (held, unheard) when p_eot >= this fraction of the threshold, in (0, 1] "
                "('none': wait for the decision)"})
    stop_silence_s: float = field(default=0.6, metadata={"help": "VAD-only: the silence that ends a turn"})
    transcript_lag_s: float = field(default=DEFAULT_TRANSCRIPT_LAG_S, metadata={
        "help": "the detector sees a word this long after it ends (the lag the operating point was evaluated with; "
                "at least the STT's measured word lag)"})

    def __post_init__(self) -> None:
        for name in ("threshold", "action_delay_s", "timeout_s", "preemptive_fraction", "stop_silence_s",
                     "transcript_lag_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (v is None or isinstance(v, (int, float))):
                raise TypeError(f"{name} must be a number, got {v!r}")
        require_range("threshold", self.threshold, 0.0, 1.0, allow_none=True)
        require_range("action_delay_s", self.action_delay_s, 0.0, 60.0)
        require_range("timeout_s", self.timeout_s, 0.0, 60.0)
        if self.action_delay_s > self.timeout_s + 1e-9:
            raise ValueError(f"--action-delay-s {self.action_delay_s:g} must be <= --timeout-s {self.timeout_s:g}: "
                             "the detector cannot act after the turn has already ended")
        require_range("preemptive_fraction", self.preemptive_fraction, 0.0, 1.0, lo_open=True, allow_none=True)
        require_range("stop_silence_s", self.stop_silence_s, 0.0, 60.0, lo_open=True)
        require_range("transcript_lag_s", self.transcript_lag_s, 0.0, 10.0)

    # -- the two forms the pipeline runs
    def resolve(self, default_threshold: float) -> "TurnPolicy":
        """This policy with its threshold set (`default_threshold` when it is None)."""
        return self if self.threshold is not None else replace(self, threshold=float(default_threshold))

    def vad_only(self) -> "TurnPolicy":
        """VAD-only at `stop_silence_s`: the turn ends after that much silence, whatever p_eot says."""
        s = self.stop_silence_s
        return replace(self, threshold=0.0, action_delay_s=s, timeout_s=s)

    @property
    def preemptive_threshold(self) -> float | None:
        """p_eot at which the held reply starts (None: off); needs a resolved threshold."""
        if self.preemptive_fraction is None:
            return None
        if self.threshold is None:
            raise ValueError("the policy's threshold is not resolved (TurnPolicy.resolve)")
        return self.preemptive_fraction * self.threshold

    def fires(self, silence_s: float, p_eot: float | None) -> bool:
        """Whether the policy ends the turn after `silence_s` of silence with the latest p_eot (None: no score yet)."""
        if silence_s >= self.timeout_s - 1e-9:
            return True
        thr = 0.0 if self.threshold is None else self.threshold
        return p_eot is not None and p_eot >= thr and silence_s >= self.action_delay_s - 1e-9

    # -- evaluated operating points
    @classmethod
    def from_operating_point(cls, op: dict, **overrides) -> "TurnPolicy":
        """The policy of one operating point (`operating_points.policy_from_metrics`' dict, or a metrics.json point:
        threshold, action_delay_s, timeout_s, and the transcript_lag_s it was evaluated with when recorded); `overrides`
        set the other fields (stop_silence_s stays 0.6 s
        unless given: VAD-only's own point on the same spans is a separate baseline)."""
        kw = {"threshold": float(op["threshold"]), "action_delay_s": float(op["action_delay_s"]),
              "timeout_s": float(op["timeout_s"])}
        if op.get("transcript_lag_s") is not None:
            kw["transcript_lag_s"] = float(op["transcript_lag_s"])
        return cls(**{**kw, **overrides})

    def describe(self) -> str:
        thr = "default" if self.threshold is None else f"{self.threshold:g}"
        pre = "off" if self.preemptive_fraction is None else f"{self.preemptive_fraction:g} x threshold"
        return (f"threshold {thr}, action delay {self.action_delay_s:g} s, timeout {self.timeout_s:g} s, "
                f"preemptive start {pre}, words shown {self.transcript_lag_s:g} s after they end; VAD-only stop "
                f"{self.stop_silence_s:g} s")
