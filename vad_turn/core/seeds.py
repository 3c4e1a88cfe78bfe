"""Stable hashes of ids: the same number on every machine, Python run and process (unlike `hash()`).

Two keyings, each with one definition here, because recorded selections depend on them:

- `stable_hash(key, seed)`: the first 8 bytes (big-endian) of sha256(f"{seed}:{key}"), and
  `stable_unit` = that / 2**64 in [0, 1). Orders and splits ids: the fusion's conversation folds and
  fit / selection split, the prosody experiment's request order, GetGoing's call splits.
- `stable_seed(*parts)`: the first 8 bytes (little-endian) of sha256 over the parts joined by
  "\\x1f". Seeds numpy generators and orders rows per id: the renderer's voice, noise and row
  order, the pipeline scenarios' row order.
"""
from __future__ import annotations

import hashlib


def stable_hash(key: object, seed: object) -> int:
    """int in [0, 2**64): the first 8 bytes, big-endian, of sha256(f"{seed}:{key}")."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def stable_unit(key: object, seed: object) -> float:
    """A number in [0, 1) from (seed, key): `stable_hash(key, seed) / 2**64`."""
    return stable_hash(key, seed) / 2**64


def stable_seed(*parts: object) -> int:
    """int in [0, 2**64): the first 8 bytes, little-endian, of sha256 over str(part)s joined by "\\x1f"."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "little")
