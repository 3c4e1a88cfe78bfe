"""Stable hashes of ids and the seeded selections built on them: the same numbers on every machine,
Python run and process (unlike `hash()`). Every id hash of the workbench is defined here and nowhere else.

One scheme: the first 8 bytes of sha256 of the id's text (`_sha256_u64`), in two keyings that differ only
in how the text is spelled and the bytes are read, each kept bit for bit because recorded selections
depend on it:

- `stable_seed(*parts)`: the parts joined by "\\x1f", little-endian. The one to use for anything new.
  Seeds numpy generators and orders rows per id: the renderer's voice, noise and row order, the agent-holds
  picks, the scenario sets' order (`seeded_order`).
- `stable_hash(key, seed)`: f"{seed}:{key}", big-endian, and `stable_unit` = that / 2**64 in [0, 1).
  Orders and splits ids: GetGoing's call splits (the dataset's splits), the fusion's conversation folds and
  fit / selection split (the shipped fused model), the prosody experiment's request order.

And one older per-turn seed outside the scheme, frozen because the shipped models' training examples were
drawn with it: `turn_seed(seed, turn_id)` = (seed * 1_000_003 + crc32(turn_id)) mod 2**32, which seeds
each turn's grid-point subsample (`harness.examples.turn_examples`). Moving any of these three to another
formula would change the datasets' splits, the rendered audio or the training sets: tests/test_seeds.py
pins them.

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
import zlib
from typing import Sequence

import numpy as np


def _sha256_u64(text: str, byteorder: str) -> int:
    """int in [0, 2**64): the first 8 bytes of sha256(text), read `byteorder` ("big" or "little")."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], byteorder)


def stable_seed(*parts: object) -> int:
    """int in [0, 2**64): the first 8 bytes, little-endian, of sha256 over str(part)s joined by "\\x1f"."""
    return _sha256_u64("\x1f".join(map(str, parts)), "little")


def stable_hash(key: object, seed: object) -> int:
    """int in [0, 2**64): the first 8 bytes, big-endian, of sha256(f"{seed}:{key}")."""
    return _sha256_u64(f"{seed}:{key}", "big")


def stable_unit(key: object, seed: object) -> float:
    """A number in [0, 1) from (seed, key): `stable_hash(key, seed) / 2**64`."""
    return stable_hash(key, seed) / 2**64


def turn_seed(seed: int, turn_id: str) -> int:
    """int in [0, 2**32): a per-turn seed that depends on the turn id only (not on the order turns are read in),
    (seed * 1_000_003 + crc32(turn_id)) mod 2**32. Frozen (see the module docstring): use `stable_seed` elsewhere."""
    return (int(seed) * 1_000_003 + zlib.crc32(turn_id.encode())) % (2**32)


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
