"""The acoustic front end: a fixed-length 16 kHz window -> per-frame log-mel and prosodic tracks.

This is the ONE definition of the acoustic features: training, torch inference and the ONNX
export (whose graph takes the raw window) all run `AcousticFrontEnd`; `window_audio` is the one
definition of the window (the last `window_s` of audio, left-padded with zeros at turn start).

Framing is anchored at the window's END: frame t covers samples [o + t*hop, o + t*hop + win) with
o = (n_samples - win) % hop, so the last frame ends at the query time. Tracks per frame (10 ms):

- log-mel: ln(mel power + 1e-5), a torchaudio-compatible HTK mel filterbank (no norm) on the power
  spectrum of a 25 ms periodic-Hann frame (== torchaudio MelSpectrogram(center=False) on that
  framing). The STFT is a conv1d with fixed DFT kernels, which exports to any ONNX opset.
- F0 (Hz) and voicing strength (0..1): Boersma's (1993) autocorrelation method, as Praat's
  "To Pitch (ac)": the signal is low-passed and decimated to `pitch_rate_hz`, each 40 ms Hann frame ENDING
  at the mel frame's end (causal) is mean-removed, its autocorrelation (from its power spectrum) is
  divided by the window's and evaluated on a log-spaced F0 grid (`f0_bins_per_semitone`) between
  `f0_min_hz` and `f0_max_hz`; the best candidate (with Praat's octave cost favouring higher F0) is
  refined by parabolic interpolation. Voiced when its strength >= `voicing_threshold` and the frame
  is within `silence_threshold_db` of the window's loudest frame. No path search (Praat's Viterbi is
  not causal), so isolated octave errors remain.
- intensity (dBFS): 10 log10(mean square + 1e-10) over the 25 ms frame.

Model inputs (channels, in this order): n_mels log-mels, then PROSODIC_CHANNELS:
f0_st (semitones from the window's mean voiced log-F0, /12, clipped to +-1, 0 when unvoiced),
voicing (strength; 0 in frames below the silence threshold), voiced (0/1), intensity (dBFS/50 + 1, in [-1, 1]),
intensity_rel ((dB - window max)/60, clipped to [-1, 0]).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vad_turn.core.audio import SAMPLE_RATE_HZ, last_window

PROSODIC_CHANNELS = ("f0_st", "voicing", "voiced", "intensity", "intensity_rel")
_LOG_MEL_FLOOR = 1e-5
_POWER_FLOOR = 1e-10
_DECIMATION_TAPS = 63


@dataclass(frozen=True)
class FeatureConfig:
    """Front-end settings (stored with every model; changing one changes the model's inputs)."""

    window_s: float = field(default=4.0, metadata={"help": "seconds of audio before the query the model sees"})
    hop_ms: float = field(default=10.0, metadata={"help": "frame hop (ms)"})
    mel_win_ms: float = field(default=25.0, metadata={"help": "frame length of the log-mel and intensity tracks (ms)"})
    n_mels: int = field(default=40, metadata={"help": "log-mel channels"})
    pitch_rate_hz: int = field(default=4000, metadata={
        "help": f"sample rate of the pitch tracker (divides {SAMPLE_RATE_HZ})"})
    pitch_win_ms: float = field(default=40.0, metadata={"help": "pitch frame length (ms), ending at the mel frame's end"})
    f0_min_hz: float = field(default=70.0, metadata={"help": "lowest F0 candidate (Hz)"})
    f0_max_hz: float = field(default=500.0, metadata={"help": "highest F0 candidate (Hz), at most pitch_rate_hz / 4"})
    f0_bins_per_semitone: int = field(default=4, metadata={"help": "F0 candidate grid density"})
    voicing_threshold: float = field(default=0.45, metadata={"help": "voiced when the autocorrelation peak reaches this"})
    silence_threshold_db: float = field(default=-30.0, metadata={
        "help": "frames this far below the window's loudest frame are unvoiced (dB)"})
    octave_cost: float = field(default=0.01, metadata={"help": "Praat's octave cost, favouring higher F0 candidates"})

    def __post_init__(self) -> None:
        d = self.decimation
        if SAMPLE_RATE_HZ % self.pitch_rate_hz or self.hop_samples % d or self.mel_win_samples % d:
            raise ValueError(f"pitch_rate_hz={self.pitch_rate_hz} must divide {SAMPLE_RATE_HZ}, and hop and mel window "
                             "must be whole numbers of pitch-rate samples")
        if self.n_samples < self.mel_win_samples or self.n_mels < 1:
            raise ValueError(f"window_s={self.window_s} is shorter than one frame, or n_mels < 1")
        if not (0 < self.f0_min_hz < self.f0_max_hz <= self.pitch_rate_hz / 4):
            raise ValueError(f"need 0 < f0_min_hz < f0_max_hz <= pitch_rate_hz / 4, "
                             f"got {self.f0_min_hz}, {self.f0_max_hz}")
        if self.pitch_rate_hz / self.f0_min_hz >= 0.5 * self.pitch_win_samples:
            raise ValueError("pitch_win_ms must cover at least two periods of f0_min_hz")

    @property
    def n_samples(self) -> int:
        return int(round(self.window_s * SAMPLE_RATE_HZ))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_ms * SAMPLE_RATE_HZ / 1000))

    @property
    def mel_win_samples(self) -> int:
        return int(round(self.mel_win_ms * SAMPLE_RATE_HZ / 1000))

    @property
    def decimation(self) -> int:
        return SAMPLE_RATE_HZ // self.pitch_rate_hz

    @property
    def pitch_win_samples(self) -> int:
        """Pitch frame length at pitch_rate_hz."""
        return int(round(self.pitch_win_ms * self.pitch_rate_hz / 1000))

    @property
    def n_frames(self) -> int:
        return 1 + (self.n_samples - self.mel_win_samples) // self.hop_samples

    @property
    def n_channels(self) -> int:
        return self.n_mels + len(PROSODIC_CHANNELS)

    def frame_end_samples(self) -> np.ndarray:
        """(n_frames,) int: the exclusive end sample of each frame within the window."""
        o = (self.n_samples - self.mel_win_samples) % self.hop_samples
        return o + self.mel_win_samples + self.hop_samples * np.arange(self.n_frames)


def window_audio(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The model window: the last cfg.n_samples of `audio`, left-padded with zeros (`core.audio.last_window`).

    audio: float32 (n,), 16 kHz mono in [-1, 1] (n may be 0 at turn start). Returns float32 (cfg.n_samples,).
    """
    return last_window(audio, cfg.n_samples)


class StreamingWindow:
    """A ring buffer giving, after any sequence of `push` calls, exactly `window_audio(all audio so far)`."""

    def __init__(self, cfg: FeatureConfig):
        self.cfg = cfg
        self._buf = np.zeros(cfg.n_samples, dtype=np.float32)
        self.n_seen = 0

    def push(self, chunk: np.ndarray) -> None:
        """chunk: float32 (n,), 16 kHz mono (any n >= 0)."""
        c = np.asarray(chunk, dtype=np.float32).reshape(-1)
        n = self.cfg.n_samples
        if c.size >= n:
            self._buf[:] = c[-n:]
        elif c.size:
            self._buf[:-c.size] = self._buf[c.size:]
            self._buf[-c.size:] = c
        self.n_seen += c.size

    def window(self) -> np.ndarray:
        return self._buf.copy()


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window's default)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float64)


def _dft_kernels(win: np.ndarray, n_fft: int, n_bins: int) -> np.ndarray:
    """(2 * n_bins, 1, len(win)) conv1d kernels: windowed cos / -sin rows of an n_fft-point DFT."""
    n = np.arange(win.size)
    k = np.arange(n_bins)[:, None]
    ang = 2 * np.pi * k * n[None] / n_fft
    return np.concatenate([win * np.cos(ang), -win * np.sin(ang)])[:, None, :].astype(np.float32)


def _lowpass(cutoff_hz: float, taps: int) -> np.ndarray:
    """Hamming-windowed sinc low-pass at 16 kHz, unit DC gain."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff_hz / SAMPLE_RATE_HZ * n) * np.hamming(taps)
    return (h / h.sum()).astype(np.float64)


class AcousticFrontEnd(nn.Module):
    """Raw window -> features. All constants are buffers, so the ONNX graph holds the same maths.

    forward(audio: float32 (batch, cfg.n_samples), 16 kHz in [-1, 1]) -> (batch, cfg.n_channels, cfg.n_frames).
    """

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        super().__init__()
        import torchaudio

        self.cfg = cfg
        win, hop = cfg.mel_win_samples, cfg.hop_samples
        n_bins = win // 2 + 1
        self.mel_offset = (cfg.n_samples - win) % hop
        self.register_buffer("mel_dft", torch.from_numpy(_dft_kernels(_hann(win), win, n_bins)))
        fb = torchaudio.functional.melscale_fbanks(n_bins, 0.0, SAMPLE_RATE_HZ / 2, cfg.n_mels, SAMPLE_RATE_HZ)
        self.register_buffer("mel_fb", fb.float())  # (n_bins, n_mels)
        # Pitch at pitch_rate_hz: causal decimation, then 40 ms frames ending where the mel frames end.
        lp = _lowpass(0.4 * cfg.pitch_rate_hz, _DECIMATION_TAPS)[::-1].copy()
        self.register_buffer("lowpass", torch.from_numpy(lp).float()[None, None])
        pw = cfg.pitch_win_samples
        n_fft = 1 << int(np.ceil(np.log2(pw + cfg.pitch_rate_hz / cfg.f0_min_hz + 1)))
        p_bins = n_fft // 2 + 1
        hann = _hann(pw)
        self.register_buffer("pitch_dft", torch.from_numpy(_dft_kernels(hann, n_fft, p_bins)))
        w_spec = np.fft.rfft(hann, n_fft)
        w_dft = np.concatenate([w_spec.real, w_spec.imag])
        self.register_buffer("pitch_win_dft", torch.from_numpy(w_dft).float()[None, :, None])
        n_st = int(np.floor(12 * cfg.f0_bins_per_semitone * np.log2(cfg.f0_max_hz / cfg.f0_min_hz))) + 1
        f0_grid = cfg.f0_min_hz * 2.0 ** (np.arange(n_st) / (12 * cfg.f0_bins_per_semitone))
        lags = cfg.pitch_rate_hz / f0_grid
        c = np.full(p_bins, 2.0)
        c[0] = c[-1] = 1.0
        cos = c[:, None] * np.cos(2 * np.pi * np.arange(p_bins)[:, None] * lags[None] / n_fft)  # (p_bins, n_st)
        r_win = (np.abs(w_spec) ** 2) @ cos / ((np.abs(w_spec) ** 2) @ c)  # normalised window autocorrelation
        # Column 0: r(0) (the frame's energy); columns 1..: r(lag of each F0 candidate) / r_window(lag).
        self.register_buffer("ac_basis", torch.from_numpy(np.concatenate([c[:, None], cos / r_win[None]], 1)).float())
        bonus = cfg.octave_cost * np.arange(n_st) / (12 * cfg.f0_bins_per_semitone)  # Praat's octave cost
        self.register_buffer("octave_bonus", torch.from_numpy(bonus).float())
        # frame 0's end at the pitch rate = its start once the signal is left-padded by one pitch frame
        self.pitch_start = (self.mel_offset + win) // cfg.decimation
        self.n_pitch_candidates = n_st

    # ------------------------------------------------------------------ tracks

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, n_samples) -> ln(mel power + 1e-5), (batch, n_mels, n_frames)."""
        x = audio[:, None, self.mel_offset:]
        spec = F.conv1d(x, self.mel_dft, stride=self.cfg.hop_samples)
        nb = spec.shape[1] // 2
        power = spec[:, :nb] ** 2 + spec[:, nb:] ** 2
        mel = torch.matmul(power.transpose(1, 2), self.mel_fb).transpose(1, 2)
        return torch.log(mel + _LOG_MEL_FLOOR)

    def intensity_db(self, audio: torch.Tensor) -> torch.Tensor:
        """(batch, n_samples) -> dBFS of each 25 ms frame, (batch, n_frames), in [-100, ~3]."""
        ms = F.avg_pool1d(audio[:, None, self.mel_offset:] ** 2, self.cfg.mel_win_samples, self.cfg.hop_samples)
        return 10.0 * torch.log10(ms[:, 0] + _POWER_FLOOR)

    def pitch(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, n_samples) -> (f0_hz, strength), each (batch, n_frames); strength in [0, 1].

        f0_hz is the best candidate whatever the voicing (use `tracks` for the voiced decision).
        """
        cfg = self.cfg
        pw = cfg.pitch_win_samples
        x = F.pad(audio[:, None], (_DECIMATION_TAPS - 1, 0))
        x8 = F.conv1d(x, self.lowpass, stride=cfg.decimation)  # x8[m] from x[.. d*m]: causal
        x8 = F.pad(x8, (pw, 0))[:, :, self.pitch_start:]
        hop8 = cfg.hop_samples // cfg.decimation
        spec = F.conv1d(x8, self.pitch_dft, stride=hop8)[:, :, : cfg.n_frames]
        mean = F.avg_pool1d(x8, pw, hop8)[:, :, : cfg.n_frames]
        spec = spec - mean * self.pitch_win_dft  # DFT of the mean-removed, windowed frame
        nb = spec.shape[1] // 2
        power = (spec[:, :nb] ** 2 + spec[:, nb:] ** 2).transpose(1, 2)  # (batch, frames, bins)
        ac = torch.matmul(power, self.ac_basis)
        r = ac[..., 1:] / (ac[..., :1] + 1e-12)  # (batch, frames, candidates): normalised autocorrelation
        score = r + self.octave_bonus
        best = torch.argmax(score, dim=-1, keepdim=True)
        lo = torch.clamp(best - 1, min=0)
        hi = torch.clamp(best + 1, max=self.n_pitch_candidates - 1)
        s0, s1, s2 = torch.gather(score, -1, lo), torch.gather(score, -1, best), torch.gather(score, -1, hi)
        denom = s0 - 2 * s1 + s2
        delta = torch.where(denom < -1e-9, 0.5 * (s0 - s2) / torch.where(denom < -1e-9, denom, -torch.ones_like(denom)),
                            torch.zeros_like(denom))
        delta = torch.clamp(delta, -0.5, 0.5)
        step = 1.0 / (12 * cfg.f0_bins_per_semitone)
        f0 = cfg.f0_min_hz * torch.exp((best.float() + delta) * (step * float(np.log(2.0))))
        strength = torch.clamp(torch.gather(r, -1, best), 0.0, 1.0)
        return f0[..., 0], strength[..., 0]

    def tracks(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw tracks of a window batch: log_mel (b, n_mels, t); f0_hz (0 when unvoiced), voicing,
        voiced (0/1), intensity_db: (b, t)."""
        logmel = self.log_mel(audio)
        db = self.intensity_db(audio)
        f0, strength = self.pitch(audio)
        loud = db >= torch.amax(db, dim=-1, keepdim=True) + self.cfg.silence_threshold_db
        voiced = ((strength >= self.cfg.voicing_threshold) & loud & (db > -90.0)).float()
        return {"log_mel": logmel, "f0_hz": f0 * voiced, "voicing": strength * loud.float(), "voiced": voiced,
                "intensity_db": db}

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        t = self.tracks(audio)
        voiced = t["voiced"]
        log_f0 = torch.log(torch.clamp(t["f0_hz"], min=1.0)) / float(np.log(2.0))
        ref = (log_f0 * voiced).sum(-1, keepdim=True) / (voiced.sum(-1, keepdim=True) + 1e-6)
        f0_st = torch.clamp(12.0 * (log_f0 - ref) * voiced / 12.0, -1.0, 1.0)
        db = t["intensity_db"]
        rel = torch.clamp((db - torch.amax(db, dim=-1, keepdim=True)) / 60.0, -1.0, 0.0)
        pros = torch.stack([f0_st, t["voicing"], voiced, db / 50.0 + 1.0, rel], dim=1)
        return torch.cat([t["log_mel"], pros], dim=1)


def features_np(audio: np.ndarray, cfg: FeatureConfig = FeatureConfig(),
                front: AcousticFrontEnd | None = None) -> np.ndarray:
    """Features of one query: window_audio(audio) through the front end -> float32 (n_channels, n_frames)."""
    front = front or AcousticFrontEnd(cfg)
    with torch.no_grad():
        return front(torch.from_numpy(window_audio(audio, front.cfg))[None])[0].numpy()
