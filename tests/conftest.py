"""Shared test set-up: offline hub, the real data root, the built datasets, small helpers.

Data a test needs is required, never optional: `require_data` and `require_built` (and the `data_root`
fixture) fail, not skip, naming where the data must be and how to get it, so a run without the corpora
or the built datasets cannot pass while checking nothing. Test modules import them:
`from conftest import require_built, require_data` (tests/ is on sys.path, as for `fixtures`)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # as vad_turn.core.onnx.import_onnxruntime does

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from vad_turn.core.config import REPO_ROOT, default_built_root, default_data_root  # noqa: E402

GET_DATA = "clone next to ../shared (or set VAD_TURN_DATA_ROOT) - the corpora are read in place"


def _shown(path: Path) -> str:
    """`path` relative to the repository when inside it (data/built/switchboard), else absolute."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return str(path)


def require_data(*parts: str) -> Path:
    """The real corpora (`default_data_root()`: $VAD_TURN_DATA_ROOT or ../shared/data), or the path
    `parts` inside them. Fails (never skips) when either is absent, saying where the data must be."""
    root = default_data_root()
    if not root.is_dir():
        pytest.fail(f"real data root {root} not found: {GET_DATA}", pytrace=False)
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} not found in the real data root {root}: the shared data is incomplete ({GET_DATA})",
                    pytrace=False)
    return path


def require_built(name: str) -> Path:
    """The built dataset `name` (under `default_built_root()`: $VAD_TURN_BUILT_ROOT or data/built).
    Fails (never skips) when it is not built, naming `make test-data`."""
    path = default_built_root() / name
    if not path.exists():
        pytest.fail(f"{_shown(path)} is not built: run `make test-data` (it needs the real data root "
                    f"{default_data_root()})", pytrace=False)
    return path


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real corpora (../shared/data or $VAD_TURN_DATA_ROOT); fails when absent (see `require_data`)."""
    return require_data()


# Where a live decision may land, from the policy in force (tests of real-time runs share this one definition).
# The turn processor checks its policy on every audio chunk / VAD frame (32 ms); it counts silence from the VAD's
# speech edge, which lies within VAD_EDGE_TOL_S of the true speech end (word alignment or the call log); and it
# emits a decision only once the final transcript is in (stt_final_s after the VAD's stop, which the VAD sends
# its hangover after that edge).
POLICY_TICK_S = 0.032
# the policy acts on the audio tick that sees the silence (or the final transcript): one more 20 ms chunk when
# the event loop is busy (the final is pushed from the STT's background decode, between two ticks)
EVENT_LOOP_SLACK_S = 0.04
VAD_EDGE_TOL_S = 0.1


def _final_silence_s(row: dict) -> float:
    """Seconds of silence (from the VAD's speech edge) at which a bench row's final transcript arrived: the VAD's
    hangover, then `stt_final_s` (clock time after the VAD's stop, which the VAD sent up to `audio_lag_s` behind
    the audio)."""
    import inspect

    from pipeline.runtime.processors.vad_stt import VADProcessor

    hangover_s = inspect.signature(VADProcessor).parameters["hangover_s"].default
    return hangover_s + (row.get("stt_final_s") or 0.0) + max(row.get("audio_lag_s") or 0.0, 0.0)


def emitted_silence_bounds(first_s: float, last_s: float, row: dict) -> tuple[float, float]:
    """[lo, hi] seconds of silence at which a bench row's decision (`eot_silence_s`) may be emitted by a policy
    that decides between `first_s` (action delay; VAD-only: its stop silence) and `last_s` (timeout) of silence."""
    return first_s - 1e-6, max(last_s, _final_silence_s(row)) + POLICY_TICK_S + EVENT_LOOP_SLACK_S


def endpoint_bounds(first_s: float, last_s: float, row: dict) -> tuple[float, float]:
    """[lo, hi] of a non-cut-off bench row's `endpoint_s` (decision - true speech end) for a policy deciding between
    `first_s` and `last_s` seconds of silence. The policy is only checked once the turn has words, which from a
    batch STT (the default, Moonshine) are its final transcript: a final later than `last_s` (a busy CPU) moves
    the decision itself, not only its emission, to that final."""
    return first_s - VAD_EDGE_TOL_S, max(last_s, _final_silence_s(row)) + POLICY_TICK_S + EVENT_LOOP_SLACK_S + \
        VAD_EDGE_TOL_S


# two real GetGoing test-split calls: 8 caller turns, 2 of them holding inside the turn
TINY_GETGOING_CALLS = ("2b7fe1873ca02362485fee19d50b8639", "66f9876fd95f6b6a45471ae7726b6343")


@pytest.fixture(scope="session")
def tiny_getgoing_build(tmp_path_factory) -> Path:
    """A GetGoing build of TINY_GETGOING_CALLS (split test) under a temporary built root, made as the builder makes
    the full one (about a minute on 2 cores): built once per test session, shared by every module that asks."""
    from vad_turn.data.corpora import load_recipe
    from vad_turn.data.corpora.getgoing import recipe_text
    from vad_turn.data.corpora.getgoing_build import GetGoingConfig, run

    raw = load_recipe("getgoing")
    data_root = require_data()
    for u in TINY_GETGOING_CALLS:
        require_data(raw["folder"], u)
    tmp = tmp_path_factory.mktemp("gg")
    (tmp / "data" / raw["folder"]).mkdir(parents=True)
    for u in TINY_GETGOING_CALLS:  # read in place: links, no copies
        os.symlink(data_root / raw["folder"] / u, tmp / "data" / raw["folder"] / u)
    (tmp / "recipes").mkdir()
    (tmp / "recipes" / "getgoing.json").write_text(
        recipe_text({**raw, "splits": {"test": list(TINY_GETGOING_CALLS)}}))
    run(GetGoingConfig(data_root=tmp / "data", out_root=tmp / "built", cache_dir=tmp / "cache",
                       recipes_dir=tmp / "recipes", splits=("test",), n_check_turns=2))
    return tmp / "built"


@pytest.fixture(scope="module")
def tiny_getgoing(tiny_getgoing_build) -> Path:
    """The tiny GetGoing build, with $VAD_TURN_BUILT_ROOT pointing at it for the module's tests (restored after)."""
    old = os.environ.get("VAD_TURN_BUILT_ROOT")
    os.environ["VAD_TURN_BUILT_ROOT"] = str(tiny_getgoing_build)
    yield tiny_getgoing_build
    if old is None:
        os.environ.pop("VAD_TURN_BUILT_ROOT", None)
    else:
        os.environ["VAD_TURN_BUILT_ROOT"] = old
