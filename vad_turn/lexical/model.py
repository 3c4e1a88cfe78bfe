"""The lexical end-of-turn model in torch: SmolLM2 token ids -> GRU -> MLP head on [state, timing].

`load_torch_model` reads a model folder (lexical.json + model.pt). Inference in production runs
the two ONNX graphs of `vad_turn.lexical.export` through `vad_turn.lexical.runtime` (no torch).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import LexicalConfig
from .inputs import TIMING_FEATURES


def _torch_model_class():
    import torch
    from torch import nn

    class LexicalGRU(nn.Module):
        """Embedding (raw SmolLM2 id -> id_map -> E) -> GRU (H) -> MLP head on [state, timing] -> logit."""

        def __init__(self, id_map: torch.Tensor, n_emb: int, emb_dim: int, hidden: int, head_hidden: int,
                     dropout: float, n_timing: int = len(TIMING_FEATURES)):
            super().__init__()
            self.register_buffer("id_map", id_map.to(torch.int64))
            self.emb = nn.Embedding(n_emb, emb_dim)
            self.drop = nn.Dropout(dropout)
            self.gru = nn.GRU(emb_dim, hidden, batch_first=True)
            self.head = nn.Sequential(nn.Linear(hidden + n_timing, head_hidden), nn.GELU(), nn.Dropout(dropout),
                                      nn.Linear(head_hidden, 1))
            self.register_buffer("timing_scale", torch.tensor([1.0, 0.3, 1.0, 2.0, 1.0, 0.25])[:n_timing])

        def forward(self, tokens, turn, pos, timing):
            """Training forward: tokens (B, T); example e is turn[e] at state index pos[e] -> logits (N,)."""
            out, _ = self.encode(tokens)
            return self.logits(out[turn, pos], timing)

        def encode(self, token_ids, h0=None):
            """token_ids (B, T) raw SmolLM2 ids -> outputs (B, T, H), last state (1, B, H)."""
            x = self.drop(self.emb(self.id_map[token_ids]))
            return self.gru(x, h0)

        def step(self, token_ids, h0):
            """(1, T) ids + state (1, 1, H) -> state (1, 1, H): the incremental update."""
            return self.encode(token_ids, h0)[1]

        def logits(self, h, timing):
            """h (N, H), timing (N, F) -> logits (N,)."""
            return self.head(torch.cat([h, timing * self.timing_scale], dim=-1)).squeeze(-1)

        def head_prob(self, h, timing):
            return torch.sigmoid(self.logits(h, timing))

    return LexicalGRU



def build_model(id_map: np.ndarray, n_emb: int, cfg: LexicalConfig):
    import torch

    return _torch_model_class()(torch.from_numpy(id_map), n_emb, cfg.emb_dim, cfg.hidden, cfg.head_hidden, cfg.dropout)



def load_torch_model(model_dir: Path):
    """The torch model of a model folder (lexical.json + model.pt), in eval mode."""
    import torch

    meta = json.loads((Path(model_dir) / "lexical.json").read_text())
    state = torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True)
    model = _torch_model_class()(state["id_map"], meta["n_emb"], meta["emb_dim"], meta["hidden"], meta["head_hidden"],
                                 0.0)
    model.load_state_dict(state)
    return model.eval()
