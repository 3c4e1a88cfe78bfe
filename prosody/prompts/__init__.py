"""The system-prompt variants of the prosody experiments, read from the one versioned file.

`variants.toml` holds `version` and one `[[variant]]` per prompt: `name`, `components` (which of
"concise", "disfluent", "punctuated" it combines) and `system_prompt`, the exact text sent as the
system message. `load_variants` checks the file: a "baseline" variant, unique names, and every
combination equal to the baseline followed by its components' sentences in file order (so a
component's wording lives in one place in spirit, and an edit that breaks a combination fails).
`chat_messages` is the only place a request becomes LLM messages.
"""
from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

VARIANTS_PATH = Path(__file__).with_name("variants.toml")
COMPONENTS = ("concise", "disfluent", "punctuated")


class PromptFileError(ValueError):
    """A malformed variants file (the message names the file and the variant)."""


@dataclass(frozen=True)
class Variant:
    name: str
    components: tuple[str, ...]
    system_prompt: str


@dataclass(frozen=True)
class PromptSet:
    version: int
    sha256: str
    path: str
    variants: dict[str, Variant]

    def select(self, names: tuple[str, ...] | list[str]) -> list[Variant]:
        """The named variants in the given order (KeyError lists the known names)."""
        missing = [n for n in names if n not in self.variants]
        if missing:
            raise KeyError(f"{self.path}: unknown variant(s) {missing}; known: {list(self.variants)}")
        return [self.variants[n] for n in names]


def load_variants(path: Path = VARIANTS_PATH) -> PromptSet:
    """Read and check the variants file; raises PromptFileError naming `path` on any problem."""
    path = Path(path)
    if not path.exists():
        raise PromptFileError(f"{path}: variants file not found")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PromptFileError(f"{path}: not valid TOML ({e})") from e
    if not isinstance(data.get("version"), int):
        raise PromptFileError(f"{path}: needs an integer `version` field")
    variants: dict[str, Variant] = {}
    for i, v in enumerate(data.get("variant", [])):
        name, prompt, comps = v.get("name"), v.get("system_prompt"), tuple(v.get("components", ()))
        if not name or not isinstance(prompt, str) or not prompt.strip():
            raise PromptFileError(f"{path}: variant #{i + 1} needs `name` and a non-empty `system_prompt`")
        if name in variants:
            raise PromptFileError(f"{path}: variant {name!r} is defined twice")
        bad = [c for c in comps if c not in COMPONENTS]
        if bad:
            raise PromptFileError(f"{path}: variant {name!r} has unknown components {bad} (known: {COMPONENTS})")
        variants[name] = Variant(name, comps, prompt)
    if "baseline" not in variants or variants["baseline"].components:
        raise PromptFileError(f"{path}: needs a 'baseline' variant without components")
    _check_combinations(path, variants)
    return PromptSet(data["version"], hashlib.sha256(raw).hexdigest(), str(path), variants)


def _check_combinations(path: Path, variants: dict[str, Variant]) -> None:
    base = variants["baseline"].system_prompt
    single = {}
    for v in variants.values():
        if len(v.components) == 1:
            if not v.system_prompt.startswith(base + " "):
                raise PromptFileError(f"{path}: variant {v.name!r} must start with the baseline prompt")
            single[v.components[0]] = v.system_prompt[len(base) + 1:]
    for v in variants.values():
        if len(v.components) > 1:
            if any(c not in single for c in v.components):
                raise PromptFileError(f"{path}: combination {v.name!r} needs each component as a single variant")
            expected = " ".join([base] + [single[c] for c in COMPONENTS if c in v.components])
            if v.system_prompt != expected:
                raise PromptFileError(
                    f"{path}: combination {v.name!r} is not the baseline + its components' sentences in order"
                )


def chat_messages(variant: Variant, user_text: str) -> list[dict]:
    """[system = the variant's prompt verbatim, user = the request text]: what the LLM receives."""
    if not user_text.strip():
        raise ValueError("empty user request")
    return [{"role": "system", "content": variant.system_prompt}, {"role": "user", "content": user_text}]
