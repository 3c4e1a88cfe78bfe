"""Text and Praat measures of one spoken reply (or one real utterance).

Text measures (`text_measures`, on the reply text as sent to TTS):

- `n_words`: tokens with a letter or digit. `n_sentences`: stretches ending in . ! ? (a final
  unterminated stretch counts as one). `words_per_sentence` = n_words / n_sentences.
- `punct_per_word`: prosodic punctuation marks (, ; : . ! ? and dashes) per word.
- `filler_rate`: (single-word fillers from `vad_turn.core.schema.FILLERS` plus "well" as the first
  word of a clause + bridge phrases from `BRIDGES` such as "let me check") per word.
- `first_clause_words`: words up to the first clause boundary (, ; : . ! ? followed by a space or
  the end, or a dash), or all words when there is none. A short first clause lets streaming TTS start sooner.

Praat measures (`praat_measures`, parselmouth, on float32 (n_samples,) 16 kHz mono audio):

- F0: `To Pitch (ac)` with time step 10 ms, floor `f0_floor_hz` (75) and ceiling `f0_ceiling_hz`
  (500) Hz; voiced frames only. `f0_median_hz`; in semitones re 100 Hz (st = 12 log2(f0/100)):
  `f0_median_st`, `f0_sd_st`, `f0_range_st` = 95th - 5th percentile (robust to octave jumps).
- `declination_st_per_s`: slope of the least-squares line of F0 (st) on time over the voiced
  frames of the utterance (needs >= 10 voiced frames spanning >= 0.5 s, else NaN).
- Pauses: Praat's `To TextGrid (silences)` on the intensity contour (`To Intensity`, floor 100 Hz,
  10 ms step): silence threshold `silence_db` (-25) dB re the maximum intensity, minimum silent
  interval `min_pause_s` (0.15 s), minimum sounding interval 0.05 s. Pauses are the silent
  intervals strictly between the first and the last sounding interval (leading and trailing
  silence excluded). `n_pauses`, `pause_mean_s` (NaN when none), `pause_total_s`,
  `pauses_per_min` = n_pauses / speaking time (first to last sound) in minutes.
- Syllable nuclei after de Jong & Wempe (2009): peaks of the intensity contour (floor 50 Hz)
  above (99th-percentile intensity - 25 dB), separated by a dip of at least 2 dB from the
  preceding kept peak, and voiced (Praat pitch defined) at the peak. `speech_rate_syl_per_s` =
  nuclei / speaking time; `articulation_rate_syl_per_s` = nuclei / phonation time (sounding time).
- `intensity_sd_db`: SD of the intensity contour (dB) over the sounding intervals.
- `duration_s`: speaking time, first to last sound.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError
from vad_turn.core.schema import FILLERS, normalize_words

BRIDGES = ("let me check", "let me see", "let me think", "you know", "i mean", "let's see", "hold on", "one moment")
CLAUSE_MARKS = r"[,;:.!?](?=\s|$)|\s[-\u2013\u2014]+\s|--"
PROSODIC_PUNCT = re.compile(r"[,;:.!?](?=\s|$)|--|\u2013|\u2014|(?<=\s)-(?=\s)")
_WORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9'\-]|\.(?=\d))*")
TEXT_MEASURES = ("words_per_sentence", "punct_per_word", "filler_rate", "first_clause_words")
PRAAT_MEASURES = (
    "f0_median_st", "f0_range_st", "f0_sd_st", "declination_st_per_s", "n_pauses", "pause_mean_s",
    "pauses_per_min", "speech_rate_syl_per_s", "articulation_rate_syl_per_s", "intensity_sd_db",
)


def words_of(text: str) -> list[str]:
    """The words of written text, normalised: tokens of letters and digits (inner apostrophes, hyphens and
    decimal points kept, so punctuation between words splits them: "well,i" is two words), each through
    `schema.normalize_words` ("Don't" -> "don't", "3.5" -> "35")."""
    return normalize_words(_WORD.findall(text))


def first_clause(text: str) -> str:
    """The text up to and including the first clause boundary mark (the whole text if none)."""
    m = re.search(CLAUSE_MARKS, text)
    return text[: m.end()].strip() if m else text.strip()


def count_fillers(text: str) -> int:
    """Single-word fillers (um, uh, ...; "well" only at a clause start) plus bridge phrases."""
    n = 0
    for clause in re.split(CLAUSE_MARKS, text.lower()):
        ws = words_of(clause)
        n += sum(w in FILLERS for w in ws)
        n += bool(ws) and ws[0] == "well"
        joined = " " + " ".join(ws) + " "
        n += sum(joined.count(f" {b} ") for b in BRIDGES)
    return n


def text_measures(text: str) -> dict[str, float]:
    """Text measures of a reply (see module docstring). Empty text raises ValueError."""
    words = words_of(text)
    if not words:
        raise ValueError(f"no words in reply text {text[:80]!r}")
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|(?<=[.!?])$", text.strip()) if words_of(s)]
    n_sent = max(1, len(sentences))
    return {
        "n_words": float(len(words)),
        "n_sentences": float(n_sent),
        "words_per_sentence": len(words) / n_sent,
        "punct_per_word": len(PROSODIC_PUNCT.findall(text)) / len(words),
        "filler_rate": count_fillers(text) / len(words),
        "first_clause_words": float(len(words_of(first_clause(text)))),
    }


# ----------------------------------------------------------------------------- Praat


def hz_to_st(f_hz: np.ndarray | float, ref_hz: float = 100.0) -> np.ndarray | float:
    """Semitones re `ref_hz`: 12 * log2(f / ref)."""
    return 12.0 * np.log2(np.asarray(f_hz) / ref_hz)


def _sound(audio: np.ndarray, sample_rate_hz: int, source: str):
    import parselmouth

    a = np.asarray(audio, dtype=np.float64)
    if a.ndim != 1:
        raise AudioError(f"{source}: expected mono (n_samples,) audio, got shape {a.shape}")
    if a.size < int(0.1 * sample_rate_hz):
        raise AudioError(f"{source}: audio too short for Praat measures ({a.size} samples)")
    if not np.all(np.isfinite(a)) or np.max(np.abs(a)) <= 0:
        raise AudioError(f"{source}: audio is silent or not finite")
    return parselmouth.Sound(a, sampling_frequency=float(sample_rate_hz))


def f0_track(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ, *, f0_floor_hz: float = 75.0,
             f0_ceiling_hz: float = 500.0, source: str = "audio") -> tuple[np.ndarray, np.ndarray]:
    """(times_s, f0_hz) of the voiced frames of Praat's autocorrelation pitch (10 ms step)."""
    snd = _sound(audio, sample_rate_hz, source)
    pitch = snd.to_pitch_ac(time_step=0.01, pitch_floor=f0_floor_hz, pitch_ceiling=f0_ceiling_hz)
    f0 = pitch.selected_array["frequency"]
    t = pitch.xs()
    voiced = f0 > 0
    return t[voiced], f0[voiced]


def final_f0_slope_st_per_s(audio: np.ndarray, end_s: float, sample_rate_hz: int = SAMPLE_RATE_HZ, *,
                            window_s: float = 0.3, f0_floor_hz: float = 75.0, f0_ceiling_hz: float = 500.0,
                            min_voiced_frames: int = 3, source: str = "audio") -> float:
    """Slope (semitones per second, least squares) of Praat's F0 over the voiced frames of the last `window_s`
    before `end_s` (the end of speech before a pause): negative = a final fall. NaN with fewer than
    `min_voiced_frames` voiced frames there. audio: float32 (n_samples,) mono at `sample_rate_hz`."""
    a = max(0.0, end_s - window_s - 0.05)  # 50 ms more on the left: Praat's first frames need context
    seg = np.asarray(audio)[int(a * sample_rate_hz): int(end_s * sample_rate_hz)]
    if seg.size < int(0.1 * sample_rate_hz) or not np.any(seg):
        return float("nan")
    t, f0 = f0_track(seg, sample_rate_hz, f0_floor_hz=f0_floor_hz, f0_ceiling_hz=f0_ceiling_hz, source=source)
    keep = t + a >= end_s - window_s
    if np.count_nonzero(keep) < min_voiced_frames:
        return float("nan")
    return float(np.polyfit(t[keep], hz_to_st(f0[keep]), 1)[0])


def sounding_intervals(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ, *, silence_db: float = -25.0,
                       min_pause_s: float = 0.15, min_sound_s: float = 0.05,
                       source: str = "audio") -> list[tuple[float, float]]:
    """Sounding (start_s, end_s) intervals from Praat's `To TextGrid (silences)` (see module docstring)."""
    from parselmouth.praat import call

    snd = _sound(audio, sample_rate_hz, source)
    intensity = snd.to_intensity(minimum_pitch=100.0, time_step=0.01)
    with warnings.catch_warnings():  # a constant-level sound (a test tone) is legitimately all "sounding"
        warnings.filterwarnings("ignore", message="The loudest and softest part")
        tg = call(intensity, "To TextGrid (silences)", silence_db, min_pause_s, min_sound_s, "silent", "sounding")
    out = []
    for i in range(1, int(call(tg, "Get number of intervals", 1)) + 1):
        if call(tg, "Get label of interval", 1, i) == "sounding":
            out.append((float(call(tg, "Get start time of interval", 1, i)), float(call(tg, "Get end time of interval", 1, i))))
    return out


def pauses_from_sounding(sounding: list[tuple[float, float]], min_pause_s: float = 0.15) -> list[float]:
    """Durations (s) of the gaps >= `min_pause_s` between consecutive sounding intervals."""
    return [b[0] - a[1] for a, b in zip(sounding[:-1], sounding[1:]) if b[0] - a[1] >= min_pause_s - 1e-9]


def syllable_nuclei(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ, *, silence_db: float = -25.0,
                    min_dip_db: float = 2.0, f0_floor_hz: float = 75.0, f0_ceiling_hz: float = 500.0,
                    source: str = "audio") -> np.ndarray:
    """Times (s) of syllable nuclei, de Jong & Wempe (2009) style (see module docstring)."""
    from scipy.signal import find_peaks

    snd = _sound(audio, sample_rate_hz, source)
    inten = snd.to_intensity(minimum_pitch=50.0, time_step=0.01)
    values = inten.values[0]
    times = inten.xs()
    threshold = np.percentile(values, 99) + silence_db
    peaks, _ = find_peaks(values)
    peaks = [p for p in peaks if values[p] > threshold]
    kept: list[int] = []
    for p in peaks:
        if not kept:
            kept.append(p)
            continue
        dip = values[kept[-1]: p + 1].min()
        if values[p] - dip >= min_dip_db:
            kept.append(p)
        elif values[p] > values[kept[-1]]:  # same nucleus, higher peak: move it
            kept[-1] = p
    pitch = snd.to_pitch_ac(time_step=0.01, pitch_floor=f0_floor_hz, pitch_ceiling=f0_ceiling_hz)
    return np.array([times[p] for p in kept if not math.isnan(pitch.get_value_at_time(times[p]))])


def praat_measures(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ, *, f0_floor_hz: float = 75.0,
                   f0_ceiling_hz: float = 500.0, silence_db: float = -25.0, min_pause_s: float = 0.15,
                   source: str = "audio") -> dict[str, float]:
    """All Praat measures of one utterance (see module docstring); NaN where undefined.

    audio: float32 (n_samples,) mono at `sample_rate_hz`, in [-1, 1]; raises AudioError for
    silent, non-finite, too-short or multi-channel input, naming `source`.
    """
    kw = dict(f0_floor_hz=f0_floor_hz, f0_ceiling_hz=f0_ceiling_hz, source=source)
    t, f0 = f0_track(audio, sample_rate_hz, **kw)
    sounding = sounding_intervals(audio, sample_rate_hz, silence_db=silence_db, min_pause_s=min_pause_s, source=source)
    if not sounding:
        raise AudioError(f"{source}: no sounding interval found")
    pauses = pauses_from_sounding(sounding, min_pause_s)
    speak_s = sounding[-1][1] - sounding[0][0]
    phon_s = sum(b - a for a, b in sounding)
    nuclei = syllable_nuclei(audio, sample_rate_hz, silence_db=silence_db, **kw)
    nan = float("nan")
    out = {"duration_s": speak_s, "phonation_s": phon_s, "n_voiced_frames": float(f0.size)}
    if f0.size:
        st = hz_to_st(f0)
        out.update(f0_median_hz=float(np.median(f0)), f0_median_st=float(np.median(st)),
                   f0_sd_st=float(np.std(st, ddof=1)) if st.size > 1 else nan,
                   f0_range_st=float(np.percentile(st, 95) - np.percentile(st, 5)))
        ok = st.size >= 10 and t[-1] - t[0] >= 0.5
        out["declination_st_per_s"] = float(np.polyfit(t, st, 1)[0]) if ok else nan
    else:
        out.update(f0_median_hz=nan, f0_median_st=nan, f0_sd_st=nan, f0_range_st=nan, declination_st_per_s=nan)
    out.update(
        n_pauses=float(len(pauses)),
        pause_mean_s=float(np.mean(pauses)) if pauses else nan,
        pause_total_s=float(np.sum(pauses)),
        pauses_per_min=len(pauses) / (speak_s / 60.0) if speak_s > 0 else nan,
        n_syllables=float(nuclei.size),
        speech_rate_syl_per_s=nuclei.size / speak_s if speak_s > 0 else nan,
        articulation_rate_syl_per_s=nuclei.size / phon_s if phon_s > 0 else nan,
        intensity_sd_db=_intensity_sd(audio, sample_rate_hz, sounding, source),
    )
    return out


def _intensity_sd(audio: np.ndarray, sample_rate_hz: int, sounding: list[tuple[float, float]], source: str) -> float:
    snd = _sound(audio, sample_rate_hz, source)
    inten = snd.to_intensity(minimum_pitch=100.0, time_step=0.01)
    t, v = inten.xs(), inten.values[0]
    mask = np.zeros(t.size, bool)
    for a, b in sounding:
        mask |= (t >= a) & (t <= b)
    return float(np.std(v[mask], ddof=1)) if mask.sum() > 1 else float("nan")
