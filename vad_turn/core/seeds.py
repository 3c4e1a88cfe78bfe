"""Stable hashes of ids and the seeded selections built on them: the same numbers on every machine,
Python run and process (unlike `hash()`).

Two keyings, each with one definition here, because recorded selections depend on them:

- `stable_hash(key, seed)`: the first 8 bytes (big-endian) of sha256(f"{seed}:{key}"), and
  `stable_unit` = that / 2**64 in [0, 1). Orders and splits ids: the fusion's conversation folds and
  fit / selection split, the prosody experiment's request order, GetGoing's call splits.
- `stable_seed(*parts)`: the first 8 bytes (little-endian) of sha256 over the parts joined by
  "\\x1f". Seeds numpy generators and orders rows per id: the renderer's voice, noise and row
  order, the pipeline scenarios' row order.

Seeded turn selection, two schemes, each defined once:

- `seeded_order(ids, seed, salt)`: positions in the order of `stable_seed(seed, salt, id)`. Order-free (an
  id's rank depends on the id alone, so adding or reordering rows never reshuffles the others): the
  renderer's source turns (salt "select"), the scenario sets ("scenario", "getgoing-scenario").
- `seeded_sample(n, k, seed)`: sorted positions of numpy's `default_rng(seed).choice(n, k, replace=False)`.
  Depends on the rows' order; kept because the shipped models' training turns and the committed evaluations
  were drawn with it: the harness's `max_turns` sample (`harness.evaluate.select_turns`, hence every training
  set built from it), the pause model's prior turns, the agent-text turns and the agent-holds picks.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np


def stable_hash(key: object, seed: object) -> int:
    """int in [0, 2**64): the first 8 bytes, big-endian, of sha256(f"{seed}:{key}")."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def stable_unit(key: object, seed: object) -> float:
    """A number in [0, 1) from (seed, key): `stable_hash(key, seed) / 2**64`."""
    return stable_hash(key, seed) / 2**64


def stable_seed(*parts: object) -> int:
    """int in [0, 2**64): the first 8 bytes, little-endian, of sha256 over str(part)s joined by "\\x1f"."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "little")


def seeded_order(ids: Sequence[object], seed: object, salt: str) -> list[int]:
    """Positions 0 .. len(ids) - 1 sorted by `stable_seed(seed, salt, id)` (equal ids keep their input order).

    The first n of the order are a seeded sample that does not depend on the order the rows come in;
    `salt` keeps the samples of different uses independent."""
    return sorted(range(len(ids)), key=lambda i: stable_seed(seed, salt, ids[i]))


def seeded_sample(n: int, k: int | None, seed) -> list[int]:
    """Sorted positions of `k` of `n` items drawn by `numpy.random.default_rng(seed).choice(n, k, replace=False)`
    (all n when k is None or k >= n). `seed`: anything `default_rng` takes (an int, or a list of ints)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
