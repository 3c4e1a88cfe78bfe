"""Text and Praat measures with numbers: synthetic tones with known F0, pauses and nuclei; espeak breaks."""
from __future__ import annotations

import numpy as np
import pytest

from prosody.measures import (
    count_fillers,
    first_clause,
    praat_measures,
    sounding_intervals,
    syllable_nuclei,
    text_measures,
)
from vad_turn.core.audio import AudioError

SR = 16_000


def tone(f0_hz, duration_s: float, amp: float = 0.5) -> np.ndarray:
    """A harmonic-rich voiced tone (3 harmonics); f0_hz may be an array per sample (glides)."""
    n = int(duration_s * SR)
    f = np.broadcast_to(np.asarray(f0_hz, float), (n,))
    phase = 2 * np.pi * np.cumsum(f) / SR
    return (amp * (np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)) / 1.75).astype(np.float32)


def test_200_hz_tone_gives_f0_200_within_2_hz():
    m = praat_measures(tone(200.0, 1.0))
    assert m["f0_median_hz"] == pytest.approx(200.0, abs=2.0)
    assert m["f0_median_st"] == pytest.approx(12.0, abs=0.2)  # 12 st re 100 Hz is one octave
    assert m["f0_sd_st"] < 0.05 and m["f0_range_st"] < 0.1
    assert m["n_pauses"] == 0


def test_declination_is_the_slope_of_f0_in_semitones():
    t = np.arange(2 * SR) / SR
    st = 15.0 - 3.0 * t  # -3 st/s from 15 st (~238 Hz) down to 9 st (~168 Hz)
    m = praat_measures(tone(100.0 * 2 ** (st / 12), 2.0))
    assert m["declination_st_per_s"] == pytest.approx(-3.0, abs=0.15)
    assert m["f0_range_st"] == pytest.approx(0.9 * 6.0, abs=0.4)  # 5th-95th percentile of a linear glide


def test_a_400_ms_silence_is_one_pause_of_400_ms():
    gap = np.zeros(int(0.4 * SR), np.float32)
    audio = np.concatenate([gap, tone(180, 0.6), gap, tone(180, 0.6), np.zeros(SR // 2, np.float32)])
    m = praat_measures(audio)
    assert m["n_pauses"] == 1  # leading and trailing silence are not pauses
    assert m["pause_mean_s"] == pytest.approx(0.4, abs=0.04)
    assert m["duration_s"] == pytest.approx(1.6, abs=0.05)


def test_short_gaps_below_150_ms_are_not_pauses():
    audio = np.concatenate([tone(180, 0.5), np.zeros(int(0.1 * SR), np.float32), tone(180, 0.5)])
    assert praat_measures(audio)["n_pauses"] == 0


def test_syllable_nuclei_count_intensity_peaks_of_voiced_bursts():
    bursts = []
    for _ in range(10):  # 10 "syllables": 150 ms voiced, 100 ms at -30 dB
        bursts += [tone(150, 0.15) * np.hanning(int(0.15 * SR)).astype(np.float32), 0.03 * tone(150, 0.1)]
    audio = np.concatenate(bursts)
    assert syllable_nuclei(audio).size == 10
    m = praat_measures(audio)
    assert m["speech_rate_syl_per_s"] == pytest.approx(10 / m["duration_s"], rel=1e-6)
    assert 3.5 < m["speech_rate_syl_per_s"] < 4.5  # 10 nuclei in ~2.4 s


def test_espeak_break_of_800_ms_is_measured_as_a_pause_of_800_ms():
    from vad_turn.engines.tts import Voice, synthesize

    audio = synthesize('<speak>Hello <break time="800ms"/> there</speak>', Voice("espeak", "en-us+f3"), ssml=True)
    intervals = sounding_intervals(audio)
    m = praat_measures(audio)
    assert m["n_pauses"] == 1, intervals
    assert m["pause_mean_s"] == pytest.approx(0.8, abs=0.1)


def test_text_measures_exact_counts_on_a_hand_written_reply():
    reply = "Um, let me check. The train leaves at 9.30, and it takes two hours. Well, you know, it is fast!"
    m = text_measures(reply)
    # words: um let me check (4) | the train leaves at 9.30 and it takes two hours (10) | well you know it is fast (6)
    assert m["n_words"] == 20
    assert m["n_sentences"] == 3
    assert m["words_per_sentence"] == pytest.approx(20 / 3)
    # marks: , . , . , , !  (the point inside 9.30 is not one)
    assert m["punct_per_word"] == pytest.approx(7 / 20)
    # fillers: um + "let me check" + clause-initial well + "you know"
    assert count_fillers(reply) == 4
    assert m["filler_rate"] == pytest.approx(4 / 20)
    assert first_clause(reply) == "Um,"
    assert m["first_clause_words"] == 1
    assert text_measures("No punctuation at all here")["first_clause_words"] == 5
    assert count_fillers("That went well, thanks.") == 0  # "well" only counts at a clause start


def test_bad_audio_is_refused_with_its_source():
    with pytest.raises(AudioError, match="reply-7: audio is silent"):
        praat_measures(np.zeros(SR, np.float32), source="reply-7")
    with pytest.raises(AudioError, match="mono"):
        praat_measures(np.zeros((SR, 2), np.float32) + 0.1)
    with pytest.raises(AudioError, match="too short"):
        praat_measures(tone(200, 0.05))
    with pytest.raises(ValueError, match="no words"):
        text_measures(" ... ")


def test_final_f0_slope_sees_a_fall_and_a_rise():
    """A glide from 220 to 160 Hz over the last 300 ms is about -18 st/s (12 * log2(160/220) / 0.3 = -18.4);
    the reverse glide +18.4; too little voicing (a pause) gives NaN."""
    import math

    from prosody.measures import final_f0_slope_st_per_s

    sr = 16000
    t = np.arange(int(1.0 * sr)) / sr

    def glide(f_start, f_end):
        f = np.where(t < 0.7, f_start, f_start + (f_end - f_start) * (t - 0.7) / 0.3)
        return (0.5 * np.sin(2 * np.pi * np.cumsum(f) / sr)).astype(np.float32)

    fall = final_f0_slope_st_per_s(glide(220.0, 160.0), 1.0)
    rise = final_f0_slope_st_per_s(glide(160.0, 220.0), 1.0)
    assert fall == pytest.approx(12 * math.log2(160 / 220) / 0.3, abs=2.5)
    assert rise == pytest.approx(-12 * math.log2(160 / 220) / 0.3, abs=2.5)
    assert math.isnan(final_f0_slope_st_per_s(np.zeros(sr, np.float32), 1.0))
