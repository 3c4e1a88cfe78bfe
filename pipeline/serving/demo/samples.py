"""Demo inputs: short scripted sample conversations, real clips, and checked uploads.

Sample conversations (`sample_scenario(name)`) are `pipeline.bench.scenarios.Scenario`s of a few seconds,
synthesized with festival's slt-hts voice (`SAMPLE_VOICE`, `scenarios.spoken`: the voice PocketSphinx
understands, ~2% WER, where espeak's gives ~60% and the agent would answer a garbled request), so the
side-by-side comparison runs in real time in well under a minute:

- "hesitation": "I want to book a flight to, um" + a `hold_s` (default 1.0 s) pause + "Boston": a
  mid-turn pause after a filler and a preposition. VAD-only with `stop_silence_s` = 0.6 ends the
  turn inside the pause (a false cut-off); a semantic detector whose p_eot stays under its
  threshold holds until the timeout or the real end;
- "barge-in": a question, then, 0.8 s into the agent's reply, "wait, actually, what time is it
  there" spoken over it (the agent should stop);
- "backchannel": a question, then "uh-huh" over the reply (the agent should carry on).

Real callers (`getgoing_samples()`): turns of the GetGoing test split (real telephone speech addressed to
a dialogue system, with their real pauses and the call's history), from the built GetGoing dataset
(`vad-turn build-getgoing`) or, on a fresh clone, from the small build of the first test calls
(`getgoing_scenarios.ensure_getgoing_build`).

`check_upload(path)` turns an uploaded file into 16 kHz mono float32 or raises `InputError` with a
message meant for the UI (not audio, empty, silence only, longer than `max_input_s`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from pipeline.bench.getgoing_scenarios import getgoing_built_root
from pipeline.bench.scenarios import QUESTIONS, Scenario, ScriptedTurn, spoken
from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, load_audio
from vad_turn.core.config import default_data_root

SAMPLES = ("hesitation", "barge-in", "backchannel")
SAMPLE_VOICE = "festival:cmu_us_slt_arctic_hts"  # the user's voice in the samples
N_GETGOING_SAMPLES = 8
HESITATION_PARTS = ("I want to book a flight to, um", "Boston")
BARGE_IN_TEXT = "wait, actually, what time is it there"
MAX_INPUT_S = 60.0  # longer uploads are refused (the comparison runs in real time)
# channels x sample rate x duration an upload may declare: 60 s of 48 kHz stereo (46 MB as float64 while decoding);
# a small FLAC can declare 8 channels at 384 kHz, which decoded before it was refused (+800 MB)
MAX_UPLOAD_VALUES = int(2 * 48_000 * MAX_INPUT_S)
SPEECH_DB = -35.0  # a file whose loudest 10 ms frame is quieter than this (dB re full scale) is silence


class InputError(ValueError):
    """Input the demo cannot run, with a message for the user (the file name included)."""


@functools.lru_cache(maxsize=8)
def hesitation_turn(hold_s: float = 1.0, voice_id: str = SAMPLE_VOICE) -> ScriptedTurn:
    """ScriptedTurn "I want to book a flight to, um ... Boston" with one real `hold_s` pause (holds records it)."""
    a, b = (spoken(t, voice_id).audio for t in HESITATION_PARTS)
    gap = np.zeros(int(round(hold_s * SAMPLE_RATE_HZ)), np.float32)
    t_a = a.size / SAMPLE_RATE_HZ
    return ScriptedTurn(f"hesitation@{hold_s:g}s", " ".join(HESITATION_PARTS).replace(",", ""),
                        np.concatenate([a, gap, b]), ((t_a, t_a + hold_s),), "tts")


@functools.lru_cache(maxsize=8)
def sample_scenario(name: str, hold_s: float = 1.0) -> Scenario:
    """One of SAMPLES as a Scenario (cached: espeak renders it once per process)."""
    if name == "hesitation":
        return Scenario("hesitation", "conversation", (hesitation_turn(hold_s),))
    if name == "barge-in":
        return Scenario("barge-in", "barge-in", (spoken(QUESTIONS[1], SAMPLE_VOICE),),
                        spoken(BARGE_IN_TEXT, SAMPLE_VOICE), interject_after_s=0.8)
    if name == "backchannel":
        return Scenario("backchannel", "backchannel", (spoken(QUESTIONS[1], SAMPLE_VOICE),),
                        spoken("uh-huh", SAMPLE_VOICE), interject_after_s=0.8)
    raise ValueError(f"unknown sample {name!r}; choose from {', '.join(SAMPLES)}")


@functools.lru_cache(maxsize=4)
def getgoing_samples(built_root: Path | None = None, n: int = N_GETGOING_SAMPLES) -> dict[str, Scenario]:
    """{label: Scenario} of `n` GetGoing test turns (`getgoing_scenarios.getgoing_scenarios`: half with a pause
    inside the turn where there are enough), labelled by id, log transcript and pauses; {} without a build."""
    from pipeline.bench.getgoing_scenarios import getgoing_scenarios

    root = Path(built_root) if built_root is not None else getgoing_built_root()
    if root is None:
        return {}
    out = {}
    for sc in getgoing_scenarios(n, built_root=root):
        turn, = sc.turns
        pauses = f", {len(turn.holds)} pause{'s' * (len(turn.holds) > 1)} inside" if turn.holds else ""
        out[f"{sc.id[3:11]}: \"{sc.meta['log_text']}\"{pauses}"] = sc
    return out


def real_clips(data_root: Path | None = None) -> dict[str, Path]:
    """{label: path} of the real clips present under the data root (clips/*, ami_excerpts/*.wav)."""
    root = Path(data_root) if data_root is not None else default_data_root()
    found = [p for p in (root / "clips" / "jfk.flac", root / "clips" / "silero_test.wav") if p.exists()]
    found += sorted((root / "ami_excerpts").glob("*.wav"))[:6] if (root / "ami_excerpts").is_dir() else []
    return {f"{p.parent.name}/{p.name}": p for p in found}


def peak_level_db(audio: np.ndarray, frame_ms: float = 10.0) -> float:
    """Loudest `frame_ms` frame's RMS in dB re full scale (-inf-safe: silence gives <= -120)."""
    n = max(1, int(SAMPLE_RATE_HZ * frame_ms / 1000))
    k = audio.size // n
    if k == 0:
        return -120.0
    rms = np.sqrt(np.mean(audio[:k * n].reshape(k, n).astype(np.float64) ** 2, axis=1))
    return float(20 * np.log10(max(rms.max(), 1e-6)))


def check_audio(audio: np.ndarray, name: str, *, max_input_s: float = MAX_INPUT_S) -> np.ndarray:
    """Refuse audio the comparison cannot use: longer than max_input_s, or silence only. audio: float32 (n,) 16 kHz."""
    dur_s = audio.size / SAMPLE_RATE_HZ
    if dur_s > max_input_s:
        raise InputError(f"{name}: {dur_s / 60:.1f} min of audio is too long for a real-time comparison "
                         f"(at most {max_input_s:.0f} s); trim it first")
    if dur_s < 0.3:
        raise InputError(f"{name}: only {1000 * dur_s:.0f} ms of audio; speak or upload at least a second")
    level = peak_level_db(audio)
    if level < SPEECH_DB:
        raise InputError(f"{name}: silence only (loudest 10 ms frame {level:.0f} dBFS < {SPEECH_DB:.0f}); "
                         "nothing for the agents to answer")
    return audio


def check_upload(path: str | Path | None, *, max_input_s: float = MAX_INPUT_S) -> np.ndarray:
    """An uploaded file as float32 (n,) 16 kHz mono in [-1, 1]; InputError with a UI message if unusable."""
    if path is None:
        raise InputError("no file: upload a WAV/FLAC/OGG recording or pick a clip")
    path = Path(path)
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile says "format not recognised" in several exception types
        raise InputError(f"{path.name}: not an audio file soundfile can read ({type(e).__name__}); "
                         "upload WAV, FLAC or OGG") from e
    if info.duration > max_input_s:  # refuse before decoding a long file
        raise InputError(f"{path.name}: {info.duration / 60:.1f} min of audio is too long for a real-time "
                         f"comparison (at most {max_input_s:.0f} s); trim it first")
    n_values = int(info.frames) * int(info.channels)  # what decoding would hold, from the header alone
    if n_values > MAX_UPLOAD_VALUES:
        raise InputError(f"{path.name}: {info.channels} channels x {info.samplerate} Hz x {info.duration:.1f} s = "
                         f"{n_values / 1e6:.1f} M samples to decode, more than the {MAX_UPLOAD_VALUES / 1e6:.2f} M "
                         f"of {max_input_s:.0f} s of 48 kHz stereo; upload mono or stereo at <= 48 kHz")
    try:
        audio = load_audio(path)
    except (AudioError, ValueError) as e:
        raise InputError(f"{path.name}: cannot decode ({e})") from e
    return check_audio(audio, path.name, max_input_s=max_input_s)
