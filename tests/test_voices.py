"""TTS voices: 16 kHz output of plausible length and pitch per engine, SSML breaks, trimming, streaming, errors."""
from __future__ import annotations

import time

import numpy as np
import pytest

from vad_turn.core.audio import low_energy_gaps, trim_silence
from vad_turn.engines.tts import (
    DEFAULT_VOICES,
    EngineError,
    EnginePaths,
    Voice,
    synthesize,
    synthesize_many,
    synthesize_stream,
    text_to_ssml,
    voice_from_id,
)

SR = 16_000
SENTENCE = "I would like more coffee"  # five words


def median_f0_hz(audio: np.ndarray) -> float:
    import parselmouth

    f0 = parselmouth.Sound(audio.astype(np.float64), SR).to_pitch().selected_array["frequency"]
    return float(np.median(f0[f0 > 0]))


# Median F0 ranges of the voices' speakers: a wrong sample rate anywhere (22.05 kHz espeak, 32 kHz
# festival, 8 kHz flite kal) would shift F0 and duration by the rate ratio (x1.38, x2, x0.5).
@pytest.mark.parametrize(
    "voice, f0_range_hz",
    [
        (Voice("espeak", "en-us"), (85, 125)),
        (Voice("espeak", "en-us+f3"), (170, 250)),
        (Voice("flite", "slt"), (150, 210)),
        (Voice("flite", "rms"), (85, 125)),
        (Voice("flite", "kal"), (75, 115)),  # an 8 kHz voice: resampled to 16 kHz
        (Voice("festival", "cmu_us_slt_arctic_hts"), (150, 210)),
    ],
    ids=lambda x: x.id if isinstance(x, Voice) else None,
)
def test_each_engine_gives_16khz_speech_of_plausible_length_and_pitch(voice, f0_range_hz):
    audio = synthesize(SENTENCE, voice)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.05 < np.abs(audio).max() <= 1.0
    speech, lead_s, trail_s = trim_silence(audio)
    assert 0.8 <= speech.size / SR <= 3.0
    assert lead_s < 0.35 and trail_s < 0.35
    lo, hi = f0_range_hz
    assert lo <= median_f0_hz(speech) <= hi


def test_default_render_set_has_six_distinct_voices_on_three_engines():
    assert len({v.id for v in DEFAULT_VOICES}) >= 6
    assert {v.engine for v in DEFAULT_VOICES} == {"espeak", "flite", "festival"}


def test_empty_text_raises():
    for text in ("", "   \n"):
        with pytest.raises(ValueError, match="empty text"):
            synthesize(text, Voice("espeak", "en-us"))
    with pytest.raises(ValueError, match="SSML"):
        synthesize("<speak>hi</speak>", Voice("flite", "slt"), ssml=True)


def test_ssml_break_gives_measured_pause_of_800ms():
    ssml = '<speak>I went to the store <break time="800ms"/> and bought some bread</speak>'
    for paths in (EnginePaths(), EnginePaths(espeak_backend="cli")):
        audio = synthesize(ssml, Voice("espeak", "en-us"), ssml=True, paths=paths)
        interior = [(a, b) for a, b in low_energy_gaps(audio) if a > 0 and b < audio.size / SR - 0.01]
        longest = max(b - a for a, b in interior)
        assert longest == pytest.approx(0.8, abs=0.1)


def test_text_to_ssml_breaks_at_punctuation():
    ssml = text_to_ssml("Well, I think so. Do you & me?")
    assert ssml == ('<speak>Well,<break time="250ms"/> I think so.<break time="500ms"/> '
                    'Do you &amp; me?<break time="500ms"/></speak>')
    audio = synthesize(text_to_ssml("yes, no", comma_ms=600), Voice("espeak", "en-us"), ssml=True)
    interior = [b - a for a, b in low_energy_gaps(audio) if a > 0 and b < audio.size / SR - 0.01]
    assert max(interior) >= 0.55  # the 600 ms break (espeak adds its own short comma pause)


def test_trim_silence_on_a_tone_with_known_padding():
    tone = (0.5 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    audio = np.concatenate([np.zeros(int(0.3 * SR), np.float32), tone, np.zeros(int(0.5 * SR), np.float32)])
    speech, lead_s, trail_s = trim_silence(audio)
    assert lead_s == pytest.approx(0.3, abs=0.01) and trail_s == pytest.approx(0.5, abs=0.01)
    assert speech.size / SR == pytest.approx(1.0, abs=0.01)
    empty, lead_s, trail_s = trim_silence(np.zeros(SR, np.float32))
    assert empty.size == 0 and lead_s == pytest.approx(1.0)


def test_stream_chunks_are_20ms_and_equal_the_whole_synthesis():
    voice = Voice("espeak", "en+m3")
    lib = list(synthesize_stream(SENTENCE, voice, chunk_ms=20))
    assert all(c.size == 320 for c in lib[:-1]) and 0 < lib[-1].size <= 320
    cli = EnginePaths(espeak_backend="cli")  # byte-reproducible (the library carries state between calls)
    chunks = list(synthesize_stream(SENTENCE, voice, chunk_ms=20, paths=cli))
    assert all(c.size == 320 for c in chunks[:-1]) and 0 < chunks[-1].size <= 320
    np.testing.assert_allclose(np.concatenate(chunks), synthesize(SENTENCE, voice, paths=cli), atol=1e-6)
    # the library's speech (CLI adds ~0.3 s of end silence) has the same length within 20 ms
    assert trim_silence(np.concatenate(lib))[0].size == pytest.approx(trim_silence(np.concatenate(chunks))[0].size, abs=320)
    flite = list(synthesize_stream(SENTENCE, Voice("flite", "awb"), chunk_ms=20))
    assert all(c.size == 320 for c in flite[:-1])


def test_espeak_library_starts_audio_sooner_than_flite():
    def ttfa_s(voice: Voice) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            next(synthesize_stream("so I was thinking we could go there tomorrow", voice))
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    lib, flite = ttfa_s(Voice("espeak", "en-us")), ttfa_s(Voice("flite", "slt"))
    assert lib < 0.05 and lib < flite


def test_rate_changes_duration_for_every_engine():
    for name in ("espeak:en-us", "flite:slt"):
        v = voice_from_id(name)
        slow = trim_silence(synthesize(SENTENCE, v))[0].size
        fast = trim_silence(synthesize(SENTENCE, Voice(v.engine, v.name, rate=1.5)))[0].size
        assert fast / slow == pytest.approx(1 / 1.5, abs=0.12)
    fest = synthesize_many([SENTENCE], Voice("festival", "cmu_us_slt_arctic_hts", rate=1.3))[0]
    assert trim_silence(fest)[0].size / SR < 1.54 / 1.3 + 0.15  # 1.54 s at rate 1.0


def test_voice_ids_round_trip_and_validation():
    for v in (Voice("espeak", "en-us+f3", 1.1, 60), Voice("flite", "slt"), Voice("festival", "cmu_us_slt_arctic_hts", 0.9)):
        assert voice_from_id(v.id) == v
    with pytest.raises(ValueError, match="pitch"):
        Voice("flite", "slt", pitch=50)
    with pytest.raises(ValueError, match="engine"):
        Voice("say", "alex")


def test_missing_binaries_and_voices_give_clear_errors():
    with pytest.raises(EngineError, match=r"flite.*/nonexistent/flite.*apt-get install flite"):
        synthesize(SENTENCE, Voice("flite", "slt"), paths=EnginePaths(flite_bin="/nonexistent/flite"))
    with pytest.raises(EngineError, match=r"festival.*/nonexistent/festival.*festvox-us-slt-hts"):
        synthesize(SENTENCE, Voice("festival", "cmu_us_slt_arctic_hts"), paths=EnginePaths(festival_bin="/nonexistent/festival"))
    with pytest.raises(EngineError, match=r"espeak-ng"):
        synthesize(SENTENCE, Voice("espeak", "en-us"), paths=EnginePaths(espeak_backend="cli", espeak_bin="/nonexistent/espeak-ng"))
    with pytest.raises(EngineError, match=r"cannot load library"):
        synthesize(SENTENCE, Voice("espeak", "en-us"), paths=EnginePaths(espeak_lib="/nonexistent/libespeak-ng.so"))
    with pytest.raises(EngineError, match=r"'nosuch'.*slt"):  # flite itself would silently fall back to kal
        synthesize(SENTENCE, Voice("flite", "nosuch"))
    with pytest.raises(EngineError, match=r"nosuch_voice.*not installed"):
        synthesize(SENTENCE, Voice("festival", "nosuch_voice"))
    with pytest.raises(EngineError, match=r"voice 'xx-nosuch'"):
        synthesize(SENTENCE, Voice("espeak", "xx-nosuch"))
