"""The end-of-turn detector protocol, the VAD-only baseline and the detector registry: one `DetectorSpec` per
detector.

A detector is a plain synchronous function of what a streaming system has at one moment of a
user's silence: `predict(audio, words, messages, silence_s) -> p_eot`. VAD-only, lexical,
acoustic and fused models and external adapters (e.g. Smart Turn) all implement it, so the
evaluation harness, the pipeline and the demo treat them alike.

What the project knows about a detector is one frozen `DetectorSpec` in `DETECTORS` (name -> spec): its factory,
display name, inputs, shipped model folder and the model folders it loads, default threshold, evaluation run per
operating-point profile, and where the pipeline and the demo offer it. Every table that needs one of these reads
the spec through the functions below: the headline's audio-only skip (`audio_only`), the operating points' shipped
folders, fingerprints and evaluation runs (`shipped_detectors`, `detector_spec`), the pipeline's and the demo's
semantic detectors (`semantic_detectors`, `DEFAULT_DETECTOR`, `default_threshold`) and the Pareto plot
(`plotted_detectors`).

Why here, with string factories, and not in each model family's package: the harness (this layer) sits below the
model families (lexical, acoustic, peers, fusion: tests/test_layering.py LAYERS), and every one of them imports
the harness's `Query` / protocol. A spec exported by each family and imported by the harness would be an upward
import (a function-local one counts too). So the table is declared here and names each family's class as a lazy
"package.module:Class" string: nothing above the harness is imported until `make_detector` builds one, and
tests/test_layering.py checks every string (the module exists, imports without side effects, and lives in a
layer a detector may live in: the harness or a model family, never prosody/ or pipeline/).

Register a detector with `register_detector(DetectorSpec("name", "package.module:Class", ...))` or
`register_detector("name", "package.module:Class")` (lazy: nothing is imported until `make_detector("name")`),
or pass a "package.module:Class" spec directly.

A spec string (given on a command line, or registered as a string) must name a detector CLASS: the module is
imported, the attribute must be a class with a callable `predict`, and the object it builds must have the
`Detector` protocol (`check_detector_spec`, `make_detector`). A spec that resolves to any other callable
(`os:system`, `subprocess:call`, a function) is refused before it is called, so a command line cannot turn
`--detector` / `--detector-opts` into a call of an arbitrary function. Code that wants a factory function
registers the callable itself (`register_detector("name", my_factory)`).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from vad_turn.core.schema import Message, Word


@dataclass(frozen=True)
class Query:
    """One moment of a user's silence, as a streaming system sees it.

    audio: float32 (n_samples,), 16 kHz mono in [-1, 1], the row's audio from its origin up to
        the query time only (n_samples = round(t_s * SAMPLE_RATE_HZ)); None for text-only rows or when the
        detector does not need audio.
    words: the words whose end is at least the transcript lag before the query time, in order
        (empty when the detector does not need words).
    messages: the previous turns, oldest first.
    silence_s: seconds of silence so far in the current span (>= 0).
    """

    audio: np.ndarray | None
    words: tuple[Word, ...]
    messages: tuple[Message, ...]
    silence_s: float


@runtime_checkable
class Detector(Protocol):
    """What the harness needs from an end-of-turn detector.

    `predict` returns p_eot in [0, 1]: the probability that the user has finished their turn.
    `needs_audio` / `needs_words` let the harness skip decoding audio or collecting words. A
    detector may also define `predict_batch(queries: Sequence[Query]) -> array (n_queries,)`
    giving the same values as calling `predict` on each query, only faster.
    """

    name: str
    needs_audio: bool
    needs_words: bool

    def predict(
        self,
        audio: np.ndarray | None,
        words: Sequence[Word],
        messages: Sequence[Message],
        silence_s: float,
    ) -> float: ...


class VADOnlyDetector:
    """The VAD-only baseline: p_eot = 1 whenever the user is silent.

    The harness only queries inside silence spans, so this detector always answers 1 and the
    policy reduces to "end the turn after `action_delay_s` of silence" (or at the timeout).
    """

    name = "vad-only"
    needs_audio = False
    needs_words = False

    def predict(self, audio, words, messages, silence_s: float) -> float:
        return 1.0

    def predict_batch(self, queries: Sequence[Query]) -> np.ndarray:
        return np.ones(len(queries), dtype=np.float64)


def predict_many(detector: Detector, queries: Sequence[Query]) -> np.ndarray:
    """p_eot (n_queries,) float64 in [0, 1], through `predict_batch` when the detector has one.

    Raises ValueError (naming the detector) for a wrong number of outputs or values outside
    [0, 1] / non-finite, instead of letting a broken model produce silently wrong metrics.
    """
    if not queries:
        return np.zeros(0, dtype=np.float64)
    batch = getattr(detector, "predict_batch", None)
    if callable(batch):
        p = np.asarray(batch(queries), dtype=np.float64).reshape(-1)
    else:
        p = np.array([float(detector.predict(q.audio, q.words, q.messages, q.silence_s)) for q in queries])
    name = getattr(detector, "name", type(detector).__name__)
    if p.shape != (len(queries),):
        raise ValueError(f"detector {name!r} returned {p.shape[0]} scores for {len(queries)} queries")
    bad = ~np.isfinite(p) | (p < 0.0) | (p > 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"detector {name!r} returned p_eot={float(p[i])} (query {i}, silence {queries[i].silence_s} s); "
                         "p_eot must be a finite probability in [0, 1]")
    return p


# ----------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class DetectorSpec:
    """Everything the project knows about one detector before building it.

    name: the registered name (`--detector`, run folder names, config files).
    factory: a lazy "package.module:Class" naming a detector class (imported by `make_detector` only), or a callable
        (code that registers its own factory).
    display_name: how figures label it.
    needs_audio / needs_words: its inputs, as its class declares them (tests/test_detector_specs.py compares);
        needs_audio and not needs_words = audio only: the headline skips it on text-only sets.
    shipped_folder: the folder under the shipped models dir its operating points ship in (None: no shipped model);
        model_folders: the folders whose checksums.json files it loads (its model fingerprint).
    default_threshold: the p_eot threshold a policy without one uses (the zero-shot LLM's p(<|im_end|>) lives on
        another scale: 1e-7..1e-3 after complete turns, 1e-12..1e-6 after "and" / "uh").
    eval_runs: (profile, run folder under runs/) pairs: the evaluation its policy of that operating-point profile
        comes from (`make reproduce` makes them).
    pipeline_rank: its place in the pipeline's and the bench's semantic detectors (tried in order, the first that
        builds wins; None: not tried). demo_rank: its place in the demo's semantic pane (None: not offered),
        demo_on_request: offered there only when picked, never tried by default.
    plot_color: its colour in figures; plotted: drawn by the Pareto plot by default.
    """

    name: str
    factory: str | Callable[..., Any]
    display_name: str = ""
    needs_audio: bool = True
    needs_words: bool = True
    shipped_folder: str | None = None
    model_folders: tuple[str, ...] = ()
    default_threshold: float = 0.5
    eval_runs: tuple[tuple[str, str], ...] = ()
    pipeline_rank: int | None = None
    demo_rank: int | None = None
    demo_on_request: bool = False
    plot_color: str | None = None
    plotted: bool = False

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str) or ":" in self.name:
            raise ValueError(f"detector name must be a non-empty string without ':', got {self.name!r}")
        if not (callable(self.factory) or isinstance(self.factory, str) and ":" in self.factory):
            raise ValueError(f"detector {self.name!r}: factory must be a callable or 'package.module:Class', "
                             f"got {self.factory!r}")
        if self.shipped_folder is not None and self.shipped_folder not in self.model_folders:
            raise ValueError(f"detector {self.name!r}: its shipped folder {self.shipped_folder!r} must be one of the "
                             f"model folders it loads {self.model_folders}")
        if not 0.0 < self.default_threshold <= 1.0:
            raise ValueError(f"detector {self.name!r}: default_threshold must be in (0, 1], got {self.default_threshold}")
        if len(dict(self.eval_runs)) != len(self.eval_runs):
            raise ValueError(f"detector {self.name!r}: one evaluation run per profile, got {self.eval_runs}")
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)

    @property
    def audio_only(self) -> bool:
        """Scores audio alone: raises AudioError on a text-only row."""
        return self.needs_audio and not self.needs_words

    def eval_run(self, profile: str) -> str | None:
        """The run folder (under runs/) its policy of `profile` comes from, None when it has none."""
        return dict(self.eval_runs).get(profile)


# name -> spec. Add a spec here or call `register_detector` from your own code. Ranks: the pipeline tries the
# cheap calibrated models before the zero-shot LLM, which costs a forward pass on the cores the reply needs; the
# demo tries the zero-shot second: like the shipped turn model it holds through the hesitation sample's "um".
DETECTORS: dict[str, DetectorSpec] = {s.name: s for s in (
    DetectorSpec("vad-only", "vad_turn.harness.detectors:VADOnlyDetector", "VAD-only",
                 needs_audio=False, needs_words=False, plot_color="tab:gray", plotted=True),
    DetectorSpec("smart-turn", "vad_turn.peers.smart_turn:SmartTurnDetector", "Smart Turn v3.2",
                 needs_audio=True, needs_words=False, demo_rank=4, demo_on_request=True, plot_color="tab:orange",
                 plotted=True),
    DetectorSpec("fused", "vad_turn.fusion.detector:FusedDetector", "turn model (fused)",
                 needs_audio=True, needs_words=True, shipped_folder="turn", model_folders=("turn", "lexical", "acoustic"),
                 eval_runs=(("conversation", "eval-fused-swbr-dev"), ("voice-agent", "eval-fused-voice-agent-dev")),
                 pipeline_rank=0, demo_rank=0, plot_color="tab:blue", plotted=True),
    DetectorSpec("fused+smart-turn", "vad_turn.fusion.stacked:StackedDetector", "turn model + Smart Turn (accuracy-first)",
                 needs_audio=True, needs_words=True, model_folders=("turn", "lexical", "acoustic"), plot_color="tab:red"),
    DetectorSpec("acoustic", "vad_turn.acoustic.runtime:AcousticDetector", "acoustic",
                 needs_audio=True, needs_words=False, shipped_folder="acoustic", model_folders=("acoustic",),
                 eval_runs=(("conversation", "eval-acoustic-swbr-dev"),),
                 pipeline_rank=2, demo_rank=3, plot_color="tab:green", plotted=True),
    DetectorSpec("lexical", "vad_turn.lexical.runtime:LexicalDetector", "lexical",
                 needs_audio=False, needs_words=True, shipped_folder="lexical", model_folders=("lexical",),
                 eval_runs=(("conversation", "eval-lexical-switchboard-val3000"),),
                 pipeline_rank=1, demo_rank=2, plot_color="tab:purple", plotted=True),
    DetectorSpec("lexical-zeroshot", "vad_turn.lexical.baselines:ZeroShotDetector", "SmolLM2 zero-shot",
                 needs_audio=False, needs_words=True, default_threshold=1e-6,
                 eval_runs=(("conversation", "eval-switchboard-val-lexical-zeroshot-150"),),
                 pipeline_rank=3, demo_rank=1, plot_color="tab:brown"),
    DetectorSpec("lexical-lr", "vad_turn.lexical.baselines:LogRegDetector", "lexical logistic regression",
                 needs_audio=False, needs_words=True),
)}


def register_detector(name: str | DetectorSpec, factory: str | Callable[..., Any] | None = None, **fields: Any) -> None:
    """Register a detector: `register_detector(DetectorSpec(...))`, or `register_detector(name, factory, **fields)`
    (the other DetectorSpec fields; needs_audio / needs_words default to True, so the headline evaluates it on
    every set). Then `make_detector(name, **opts)` builds it with `factory(**opts)`.

    `factory` is a callable or a lazy "package.module:attribute" spec (imported on first use).
    """
    spec = name if isinstance(name, DetectorSpec) else DetectorSpec(name, factory, **fields)
    if isinstance(name, DetectorSpec) and (factory is not None or fields):
        raise TypeError("register_detector(spec) takes no other arguments")
    DETECTORS[spec.name] = spec


def detector_spec(name: str) -> DetectorSpec:
    """The registered spec of `name`; ValueError for an unregistered one."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; registered: {', '.join(available_detectors())}")
    return DETECTORS[name]


def default_threshold(name: str) -> float:
    """The p_eot threshold a policy without one uses for `name` (0.5 for a "package.module:Class" spec)."""
    return DETECTORS[name].default_threshold if name in DETECTORS else 0.5


def audio_only(name: str) -> bool:
    """Whether registered detector `name` scores audio alone (False for a "package.module:Class" spec)."""
    return name in DETECTORS and DETECTORS[name].audio_only


def shipped_detectors() -> tuple[str, ...]:
    """The detectors with a shipped model folder (and so shipped operating points), in registry order."""
    return tuple(n for n, s in DETECTORS.items() if s.shipped_folder is not None)


def semantic_detectors(where: str = "pipeline") -> tuple[str, ...]:
    """The semantic detectors, in order: those the pipeline and the bench try ("pipeline"), those the demo's
    semantic pane tries ("demo") and those its settings offer ("demo-choices": the demo's, then the ones tried
    only on request)."""
    if where == "pipeline":
        ranked = [(s.pipeline_rank, n) for n, s in DETECTORS.items() if s.pipeline_rank is not None]
    elif where in ("demo", "demo-choices"):
        ranked = [((s.demo_on_request, s.demo_rank), n) for n, s in DETECTORS.items()
                  if s.demo_rank is not None and (where == "demo-choices" or not s.demo_on_request)]
    else:
        raise ValueError(f"where must be pipeline, demo or demo-choices, got {where!r}")
    return tuple(n for _, n in sorted(ranked))


def plotted_detectors() -> tuple[str, ...]:
    """The detectors the Pareto plot draws by default, in registry order."""
    return tuple(n for n, s in DETECTORS.items() if s.plotted)


# the project's best detector: first of the pipeline's, the bench's and the demo's
DEFAULT_DETECTOR = semantic_detectors("pipeline")[0]


def available_detectors() -> list[str]:
    return sorted(DETECTORS)


def _resolve(spec: str) -> type:
    """The detector class a "package.module:Class" spec names (see the module docstring); ValueError otherwise."""
    module, _, attr = spec.partition(":")
    if not module or not attr or not all(p.isidentifier() for p in module.split(".") + attr.split(".")):
        raise ValueError(f"detector spec {spec!r} must look like 'package.module:Class'")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"detector spec {spec!r}: cannot import {module} ({e})") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"detector spec {spec!r}: {module} has no attribute {attr}")
        obj = getattr(obj, part)
    if not inspect.isclass(obj) or not callable(getattr(obj, "predict", None)):
        what = f"a {type(obj).__name__}" if not inspect.isclass(obj) else "a class without predict()"
        raise ValueError(f"detector spec {spec!r}: {module}.{attr} is {what}, not a detector class; give a "
                         f"registered name ({', '.join(available_detectors())}) or 'package.module:Class' naming a "
                         "class with the Detector protocol")
    return obj


def check_detector_spec(spec: str, flag: str = "--detector") -> None:
    """ValueError naming `flag` unless `spec` is a registered detector name or a "package.module:Class" spec of a
    detector class (imports that module; nothing is built). Config dataclasses call it in __post_init__."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"{flag}: a detector name must be a non-empty string, got {spec!r}")
    if spec in DETECTORS:
        return
    if ":" not in spec:
        raise ValueError(f"{flag}: unknown detector {spec!r}; registered: {', '.join(available_detectors())} "
                         "(or 'package.module:Class')")
    try:
        _resolve(spec)
    except ValueError as e:
        raise ValueError(f"{flag}: {e}") from None


def make_detector(name: str, **opts: Any) -> Detector:
    """Build a registered detector by name (or from a "package.module:Class" spec).

    `opts` go to the factory (e.g. a checkpoint path). The result is checked against `Detector`.
    """
    if name in DETECTORS:
        factory = DETECTORS[name].factory
    elif ":" in name:
        factory = name
    else:
        raise ValueError(f"unknown detector {name!r}; registered: {', '.join(available_detectors())} "
                         "(or pass 'package.module:Class')")
    if isinstance(factory, str):
        factory = _resolve(factory)
    try:  # options the factory does not take are the caller's error (one line), not a traceback from inside it
        inspect.signature(factory).bind(**opts)
    except TypeError as e:
        raise ValueError(f"detector {name!r}: options {', '.join(sorted(opts)) or '(none)'} do not fit "
                         f"{getattr(factory, '__name__', 'its factory')}{inspect.signature(factory)}: {e}") from None
    except ValueError:  # no inspectable signature: let the call say
        pass
    det = factory(**opts)
    missing = [a for a in ("name", "needs_audio", "needs_words", "predict") if not hasattr(det, a)]
    if missing:
        raise TypeError(f"detector {name!r} ({type(det).__name__}) lacks {', '.join(missing)} of the Detector protocol")
    return det


def parse_detector_opts(opts: Sequence[str]) -> dict[str, str | bool]:
    """["checkpoint=runs/x", "int8=true"] -> {"checkpoint": "runs/x", "int8": True}.

    true/false/yes/no (any case) become booleans; every other value stays a string.
    """
    flags = {"true": True, "yes": True, "false": False, "no": False}
    out: dict[str, str | bool] = {}
    for o in opts:
        key, sep, value = o.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"detector option {o!r} must look like key=value")
        out[key.strip().replace("-", "_")] = flags.get(value.strip().lower(), value)
    return out


def require_bool(name: str, value) -> bool:
    """A detector's boolean option, refusing strings such as "0" that would silently read as true."""
    if not isinstance(value, bool):
        raise TypeError(f"detector option {name} must be true or false, got {value!r}")
    return value
