"""Training options of the lexical GRU (`vad-turn train-lexical`), shared by its model, export and trainer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.config import default_built_root
from vad_turn.core.train import TrainConfig

from .inputs import DEFAULT_TRANSCRIPT_LAG_S


@dataclass(frozen=True)
class LexicalConfig(TrainConfig):
    dataset: Path = field(default_factory=lambda: default_built_root() / "switchboard",
                          metadata={"help": "turn-span dataset with 'train' and 'dev' (val) splits"})
    max_turns: int | None = field(default=20000, metadata={"help": "seeded sample of train turns (none: all 51,987)"})
    val_turns: int = field(default=3000, metadata={"help": "seeded sample of val turns for the validation loss"})
    points_per_span: int = field(default=4, metadata={"help": "grid points kept per silence span (seeded)"})
    min_token_count: int = field(default=5, metadata={"help": "SmolLM2 tokens seen fewer times in train map to UNK"})
    emb_dim: int = field(default=48, metadata={"help": "token embedding size"})
    hidden: int = field(default=128, metadata={"help": "GRU state size"})
    head_hidden: int = field(default=64, metadata={"help": "MLP head width"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings and the head"})
    turns_per_batch: int = field(default=32, metadata={"help": "turns of similar length per bucket"})
    batch_size: int = field(default=1, metadata={"help": "buckets per optimiser step (keep 1)"})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate"})
    epochs: int = field(default=3, metadata={"help": "passes over the training buckets"})
    tokenizer: Path | None = field(default=None, metadata={"help": "SmolLM2 tokenizer.json (default: the local cache)"})
    transcript_lag_s: float = field(default=DEFAULT_TRANSCRIPT_LAG_S, metadata={
        "help": "words become visible this long after they end, in the training and validation examples (the "
                "harness's --transcript-lag-s; match the STT the model will serve, recorded in lexical.json)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.transcript_lag_s >= 0:
            raise ValueError(f"transcript_lag_s must be >= 0, got {self.transcript_lag_s}")
