"""Training options of the lexical GRU (`vad-turn train-lexical`), shared by its model, export and trainer."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.config import default_built_root, default_data_root
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
    agent_text_turns: int | None = field(default=0, metadata={
        "help": "user turns per agent-text corpus trained on beside the dataset (DSTC2 and SGD train, MultiWOZ val, "
                "SLURP devel; never the test splits `vad-turn agent-text` reports on), every word boundary an "
                "example (vad_turn.lexical.agent_items; 0: none, none: all)"})
    agent_text_val_turns: int = field(default=500, metadata={
        "help": "user turns per agent-text validation corpus (DSTC2 val, SGD dev) added to the validation set "
                "when --agent-text-turns is not 0"})
    agent_text_root: Path = field(default_factory=default_data_root, metadata={
        "help": "data root holding agent_text/ (read in place)"})
    agent_text_balance: bool = field(default=False, metadata={
        "help": "repeat the items of smaller agent-text corpora (each copy with its own seeded word timing and "
                "query silences, at most 8 copies) towards the largest corpus's count, so SLURP's 2k devel turns "
                "weigh like SGD's"})
    agent_text_filler_rate: float = field(default=0.0, metadata={
        "help": "share of agent-text training turns given one spoken filler (um / uh) after a random non-final "
                "word (vad_turn.lexical.agent_items.with_filler): the written corpora have no hesitations"})
    agent_text_slurp_swaps: int = field(default=0, metadata={
        "help": "SLURP devel commands with entities rewritten this many times each with other values of the same "
                "entity types (vad_turn.data.corpora.agent_text.slurp_slot_swaps), trained on beside the originals"})
    extra_datasets: tuple[str, ...] = field(default=(), metadata={
        "help": "more built turn-span datasets (names under the built root, e.g. getgoing) trained on beside "
                "--dataset: their train split trains, their val (or dev) split joins the validation set"})
    extra_repeat: int = field(default=1, metadata={
        "help": "copies of each --extra-datasets training turn (its query points re-drawn per copy)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.transcript_lag_s >= 0:
            raise ValueError(f"transcript_lag_s must be >= 0, got {self.transcript_lag_s}")
        if self.agent_text_turns is not None and self.agent_text_turns < 0:
            raise ValueError(f"--agent-text-turns must be >= 0 (or none: all), got {self.agent_text_turns}")
        if not 0.0 <= self.agent_text_filler_rate <= 1.0:
            raise ValueError(f"--agent-text-filler-rate must be in [0, 1], got {self.agent_text_filler_rate}")
        if self.agent_text_slurp_swaps < 0:
            raise ValueError(f"--agent-text-slurp-swaps must be >= 0, got {self.agent_text_slurp_swaps}")
        if self.extra_repeat < 1:
            raise ValueError(f"--extra-repeat must be >= 1, got {self.extra_repeat}")
        if self.agent_text_val_turns < 1:
            raise ValueError(f"--agent-text-val-turns must be >= 1, got {self.agent_text_val_turns}")
