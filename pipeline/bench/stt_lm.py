"""The domain language model for PocketSphinx: a Witten-Bell trigram of what callers say to agents.

    python -m pipeline.bench.stt_lm        # -> runs/cache/stt-lm/getgoing-dstc2-3g.arpa (~350 kB), what
                                     # make_stt("pocketsphinx-getgoing") loads

Text (read in place from the shared data root, never copied into the repo):
- GetGoing TRAIN calls (the recipe's train split, `data/recipes/getgoing.json`): the USER lines of each
  call's `log.json` (Google ASR of the caller), numbers spelled as said (`getgoing_log.align_tokens`:
  "61C" -> sixty one c), counted `getgoing_weight` times;
- the agent-text corpora's train splits (`agent_text.TRAIN_SPLITS`): by default DSTC2 train only (callers
  to a restaurant-information phone system), user turns, normalised the same way, counted once.
  On 61 GetGoing dev turns (whole clips, pipeline search) PocketSphinx's WER vs the log was 1.24 with its
  bundled LM, 0.99 with this default and 1.18 with `--agent-corpora dstc2 slurp sgd multiwoz
  --getgoing-weight 5 --min-count 2` (1 M words of mostly typed SGD text outweigh the 9 k GetGoing words).
Words outside PocketSphinx's bundled dictionary split a sentence (no n-gram spans them). Dev and test
GetGoing calls are never read. The estimator is `vad_turn.engines.arpa_lm.NgramLM`; `build_info` (counts,
sizes, config) is written beside the ARPA file.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.config import config_main, config_to_dict, default_data_root
from vad_turn.core.runs import atomic_write_json, atomic_write_text


def default_lm_path() -> Path:
    from vad_turn.engines.stt import domain_lm_path

    return domain_lm_path()


@dataclass(frozen=True)
class SttLmConfig:
    data_root: Path = field(default_factory=default_data_root, metadata={"help": "shared data root (getgoing/, agent_text/)"})
    getgoing_weight: float = field(default=1.0, metadata={"help": "times each GetGoing train line is counted"})
    agent_corpora: tuple[str, ...] = field(default=("dstc2",), metadata={
        "help": "agent-text corpora whose train split is added (empty: GetGoing only)"})
    order: int = field(default=3, metadata={"help": "n-gram order"})
    min_count: float = field(default=1.0, metadata={"help": "highest-order n-grams below this weighted count are pruned"})
    out: Path = field(default_factory=default_lm_path, metadata={"help": "ARPA file written"})


def tokens(text: str) -> list[str]:
    """One user line -> lowercase spoken-form tokens (numbers spelled, punctuation dropped)."""
    from vad_turn.data.corpora.getgoing_log import align_tokens

    return align_tokens(text)


def getgoing_train_lines(data_root: Path) -> list[str]:
    """The USER lines of the GetGoing train calls' logs, in recipe order."""
    from vad_turn.data.corpora import load_recipe
    from vad_turn.data.corpora.getgoing_log import parse_history

    recipe = load_recipe("getgoing")
    calls = Path(data_root) / recipe["folder"]
    out = []
    for uuid in recipe["splits"]["train"]:
        log = calls / uuid / "log.json"
        if not log.is_file():
            continue
        lines, _ = parse_history(json.loads(log.read_text()).get("history", []))
        out += [ln.text for ln in lines if ln.kind == "USER"]
    return out


def agent_train_lines(data_root: Path, corpora: tuple[str, ...]) -> list[str]:
    """User turns of the agent-text corpora's train splits."""
    from vad_turn.data.corpora import agent_text as at

    readers = {"dstc2": at.read_dstc2, "slurp": at.read_slurp, "sgd": at.read_sgd, "multiwoz": at.read_multiwoz}
    root = Path(data_root) / "agent_text"
    out = []
    for c in corpora:
        for d in readers[c](root, at.TRAIN_SPLITS[c]):
            out += [text for role, text in d.turns if role == "user"]
    return out


def pocketsphinx_vocab() -> set[str]:
    """The words of PocketSphinx's bundled dictionary (alternates like "the(2)" folded)."""
    import pocketsphinx

    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    return {line.split(" ", 1)[0].split("(")[0] for line in path.read_text(errors="replace").splitlines() if line}


def build(cfg: SttLmConfig) -> dict:
    """Write the ARPA file and its build_info JSON; returns build_info."""
    from vad_turn.engines.arpa_lm import NgramLM

    t0 = time.perf_counter()
    gg = [tokens(t) for t in getgoing_train_lines(cfg.data_root)]
    ag = [tokens(t) for t in agent_train_lines(cfg.data_root, cfg.agent_corpora)] if cfg.agent_corpora else []
    vocab = pocketsphinx_vocab()
    corpora = [(gg, cfg.getgoing_weight)] + ([(ag, 1.0)] if ag else [])
    lm = NgramLM(corpora, order=cfg.order, min_count=cfg.min_count, vocab=vocab)
    text = lm.arpa()
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    n_words = [sum(len(s) for s in gg), sum(len(s) for s in ag)]
    oov = sum(1 for s in gg + ag for w in s if w not in vocab)
    info = {"config": config_to_dict(cfg), "arpa": str(out), "arpa_bytes": len(text.encode()),
            "n_getgoing_lines": len(gg), "n_agent_lines": len(ag), "n_words": {"getgoing": n_words[0], "agent": n_words[1]},
            "oov_rate": oov / max(1, sum(n_words)), "ngrams": [len(p) for p in lm.probs], "vocab_size": len(lm.vocab),
            "wall_s": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out.with_suffix(".json"), info)
    return info


def ensure_lm(cfg: SttLmConfig | None = None) -> Path:
    """The ARPA file of `cfg` (default config), built when missing."""
    cfg = cfg or SttLmConfig()
    if not Path(cfg.out).is_file():
        build(cfg)
    return Path(cfg.out)


def run_and_print(cfg: SttLmConfig) -> dict:
    info = build(cfg)
    print(json.dumps({k: v for k, v in info.items() if k != "config"}, indent=1))
    return info


def main(argv: list[str] | None = None) -> int:
    return config_main(SttLmConfig, run_and_print, argv, __doc__.splitlines()[0], prog="python -m pipeline.bench.stt_lm")


if __name__ == "__main__":
    sys.exit(main())
