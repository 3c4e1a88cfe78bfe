"""The acoustic end-of-turn model: the last `window_s` of audio + the silence so far -> p_eot.

    window (float32 (batch, n_samples), 16 kHz)  --AcousticFrontEnd-->  (batch, 45, 398) features
      -> input BatchNorm -> 3 x [Conv1d k5 stride 2, BatchNorm, ReLU]  (10 ms -> 80 ms frames)
      -> LSTM; its output at the frame where the silence began (speech-end readout, so a long
         silence cannot wash out the last words) ++ its last state ++ silence features -> MLP -> logit

The front end (`vad_turn.acoustic.features`) is part of the module, so the torch model, training and the
ONNX graph (`vad_turn.acoustic.export`) share one definition of the features. A saved model is a
folder: `config.json` (AcousticModelConfig), `model.pt` (state dict), and after export
`model.onnx` / `model.int8.onnx`. `AcousticDetector` (registered as "acoustic") runs either.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from vad_turn.core.config import config_from_dict, config_to_flat_dict
from vad_turn.core.model_files import SHIPPED_ACOUSTIC_DIR
from vad_turn.core.runs import atomic_path, atomic_write_json
from vad_turn.core.schema import MAX_SILENCE_S

from .features import AcousticFrontEnd, FeatureConfig

DEFAULT_MODEL_DIR = SHIPPED_ACOUSTIC_DIR


@dataclass(frozen=True)
class AcousticModelConfig:
    """Architecture and front end of the acoustic model (saved as the model folder's config.json)."""

    features: FeatureConfig = field(default_factory=FeatureConfig, metadata={
        "help": "the front end: audio window and feature tracks"})
    conv_channels: int = field(default=64, metadata={"help": "channels of the three strided convolutions"})
    lstm_hidden: int = field(default=64, metadata={"help": "LSTM state size"})
    head_hidden: int = field(default=32, metadata={"help": "MLP head width"})
    dropout: float = field(default=0.1, metadata={"help": "dropout in the head"})
    readout: str = field(default="speech_end+last", metadata={
        "help": "LSTM readout: speech_end+last (its output where the silence began, and its last state) or last"})

    def __post_init__(self) -> None:
        if self.readout not in ("speech_end+last", "last"):
            raise ValueError(f"readout must be 'speech_end+last' or 'last', got {self.readout!r}")

    @property
    def step_s(self) -> float:
        """Seconds per LSTM step (three stride-2 convolutions over 10 ms frames)."""
        return 8 * self.features.hop_ms / 1000


def silence_features(silence_s: torch.Tensor) -> torch.Tensor:
    """(batch,) seconds of silence so far -> (batch, 3): s/5, ln(s + 0.05), 1[s > 0], s clipped to [0, 5]."""
    s = torch.clamp(silence_s, 0.0, MAX_SILENCE_S)
    return torch.stack([s / MAX_SILENCE_S, torch.log(s + 0.05), (s > 0).float()], dim=-1)


class AcousticNet(nn.Module):
    """forward(x, silence_s) -> logit (batch,).

    x: float32 (batch, n_samples) raw 16 kHz windows (`window_audio`), or (batch, n_channels,
    n_frames) front-end features (precomputed once in training: the front end has no weights).
    silence_s: float32 (batch,), seconds of silence so far (>= 0).
    """

    def __init__(self, cfg: AcousticModelConfig = AcousticModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.frontend = AcousticFrontEnd(cfg.features)
        c_in, ch = cfg.features.n_channels, cfg.conv_channels
        self.in_norm = nn.BatchNorm1d(c_in)
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv1d(c_in if i == 0 else ch, ch, 5, stride=2, padding=2), nn.BatchNorm1d(ch), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.lstm = nn.LSTM(ch, cfg.lstm_hidden, batch_first=True)
        n_read = 2 if cfg.readout == "speech_end+last" else 1
        self.head = nn.Sequential(nn.Linear(n_read * cfg.lstm_hidden + 3, cfg.head_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(cfg.head_hidden, 1))

    def encode(self, x: torch.Tensor, silence_s: torch.Tensor) -> torch.Tensor:
        """Windows (batch, n_samples) or features (batch, n_channels, n_frames), and silence_s (batch,)
        -> (batch, n_read * lstm_hidden): the audio summary the head reads (reusable by fusion models)."""
        if x.dim() == 2:
            x = self.frontend(x)
        h = self.convs(self.in_norm(x))
        out, (last, _) = self.lstm(h.transpose(1, 2))  # out: (batch, steps, hidden)
        if self.cfg.readout == "last":
            return last[-1]
        steps = out.shape[1]
        back = torch.floor(torch.clamp(silence_s, min=0.0) / self.cfg.step_s + 1e-4).long()
        idx = torch.clamp(steps - 1 - back, min=0)[:, None, None].expand(-1, 1, out.shape[2])
        return torch.cat([torch.gather(out, 1, idx)[:, 0], last[-1]], dim=-1)

    def forward(self, x: torch.Tensor, silence_s: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encode(x, silence_s), silence_features(silence_s)], dim=-1))[:, 0]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ProbabilityNet(nn.Module):
    """The exported graph: (window (batch, n_samples), silence_s (batch,)) -> p_eot (batch,) in [0, 1]."""

    def __init__(self, net: AcousticNet):
        super().__init__()
        self.net = net

    def forward(self, audio: torch.Tensor, silence_s: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(audio, silence_s))


# ----------------------------------------------------------------------------- folders


def save_model(net: AcousticNet, folder: Path, extra: dict | None = None) -> Path:
    """Write `config.json` (architecture + `extra`) and `model.pt` (state dict) into `folder`."""
    with atomic_path(Path(folder) / "model.pt") as tmp:
        torch.save(net.state_dict(), tmp)
    atomic_write_json(folder / "config.json", {"model": config_to_flat_dict(net.cfg), **(extra or {})})
    for f in (folder / "config.json", folder / "model.pt"):
        f.chmod(0o644)  # temp files are private; a shipped model is for everyone
    return folder


def load_model_config(folder: Path) -> AcousticModelConfig:
    """The model folder's architecture: config.json's "model" section, flat (the front end's fields beside the
    network's, as every model folder has stored it; a folder written before the front end's other settings were
    stored holds only window_s and n_mels of them, the rest are the defaults)."""
    path = Path(folder) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no acoustic model config (train one with `vad-turn train-acoustic`)")
    try:
        raw = json.loads(path.read_text())["model"]
        return config_from_dict(AcousticModelConfig, raw)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not an acoustic model config ({e})") from e


def load_model(folder: Path = DEFAULT_MODEL_DIR) -> AcousticNet:
    """The torch model saved in `folder` (eval mode)."""
    folder = Path(folder)
    net = AcousticNet(load_model_config(folder))
    weights = folder / "model.pt"
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: no acoustic model weights")
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


# ----------------------------------------------------------------------------- detector




