"""Opening a model folder's files: sha256 verification, JSON metadata and ONNX sessions, with named errors.

A model folder may hold `checksums.json`: {"algorithm": "sha256", "files": {name: hex digest}} for the
files the inference runtime loads from it. When it is there, every file loaded from that folder is
hashed and compared before use (`verify_model_file`): a file whose digest differs raises
`ChecksumMismatch`, a loaded file the record does not list raises `ModelFileError`, both naming the
file. A folder without `checksums.json` (a fresh training run's model folder) is loaded unverified.

Hashes are cached in-process per (resolved path, size, mtime_ns), so a second load of the same
unchanged file costs a `stat`. Hashing the shipped fused model's files (about 9 MB: fusion.json, the
lexical tokenizer and ONNX pair, the fp32 and int8 acoustic graphs and the int8 probe, 9.1 MB) took
10-15 ms on one core of the workbench machine, once per process (0.3 ms when cached), against ~200-300 ms
for the whole `load_turn_model`.

After re-exporting a model into a folder that has a `checksums.json`, rewrite it with
`write_checksums(folder, names)` (or, for the fused model and both its branches,
`vad_turn.fusion.runtime.write_turn_model_checksums()`); until then the model refuses to load.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from .config import SHIPPED_MODELS_DIR

# the shipped model folders (package data): the fused model and its two branches
SHIPPED_TURN_DIR = SHIPPED_MODELS_DIR / "turn"
SHIPPED_LEXICAL_DIR = SHIPPED_MODELS_DIR / "lexical"
SHIPPED_ACOUSTIC_DIR = SHIPPED_MODELS_DIR / "acoustic"
SHIPPED_ACCURACY_FIRST_DIR = SHIPPED_MODELS_DIR / "accuracy-first"  # the fused model + Smart Turn mix (its alpha)
CHECKSUMS_FILE = "checksums.json"
_CHUNK_BYTES = 1 << 20
_HASHES: dict[tuple, str] = {}


class ModelFileError(ValueError):
    """A model file that cannot be used (corrupt, truncated, wrong contents, a bad field), naming the file."""


class ChecksumMismatch(ModelFileError):
    """A model file whose sha256 differs from the one recorded in its folder's checksums.json."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, cached per (resolved path, size, mtime_ns) in this process."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK_BYTES), b""):
                h.update(chunk)
        digest = _HASHES[key] = h.hexdigest()
    return digest


def recorded_checksums(folder: str | Path) -> dict[str, str] | None:
    """{file name: sha256 hex} from `folder/checksums.json`, or None when the folder has none.

    Raises ModelFileError naming checksums.json when it is not valid JSON of the expected form."""
    path = Path(folder) / CHECKSUMS_FILE
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
        if rec.get("algorithm") != "sha256" or not isinstance(rec.get("files"), dict):
            raise ValueError('expected {"algorithm": "sha256", "files": {name: hex digest}}')
        return {str(k): str(v) for k, v in rec["files"].items()}
    except (OSError, ValueError, AttributeError) as e:
        raise ModelFileError(f"{path}: unreadable checksum record ({e}); rewrite it with "
                             "vad_turn.core.model_files.write_checksums") from e


def verify_model_file(path: str | Path) -> bool:
    """Check `path` against the checksums.json of its own folder.

    True when verified, False when the folder has no checksums.json. Raises ChecksumMismatch naming
    the file and both digests, or ModelFileError when the record does not list the file."""
    path = Path(path)
    rec = recorded_checksums(path.parent)
    if rec is None:
        return False
    want = rec.get(path.name)
    if want is None:
        raise ModelFileError(f"{path}: not listed in {path.parent / CHECKSUMS_FILE}; add it with "
                             f"vad_turn.core.model_files.write_checksums({str(path.parent)!r}, [{path.name!r}])")
    got = sha256_file(path)
    if got != want:
        raise ChecksumMismatch(f"{path}: sha256 {got[:16]}... differs from {want[:16]}... recorded in "
                               f"{path.parent / CHECKSUMS_FILE}: the file is corrupt, truncated or was replaced. "
                               "If it was re-exported on purpose, rewrite the record with "
                               "vad_turn.fusion.runtime.write_turn_model_checksums() (or model_files.write_checksums)")
    return True


def write_checksums(folder: str | Path, names: Iterable[str]) -> dict[str, str]:
    """(Re)write `folder/checksums.json` with the sha256 of `names` (files in `folder`), keeping the
    entries of other files still present there (all recomputed from the files as they are now).

    Written atomically; returns {name: sha256 hex}. Raises FileNotFoundError naming a missing file."""
    from .runs import atomic_write_json

    folder = Path(folder)
    names = set(names) | set((recorded_checksums(folder) or {}).keys())
    files = {}
    for name in sorted(names):
        p = folder / name
        if not p.is_file():
            if name in (recorded_checksums(folder) or {}):
                continue  # a recorded file that is gone: drop its entry
            raise FileNotFoundError(f"{p}: cannot record the checksum of a missing file")
        files[name] = sha256_file(p)
    atomic_write_json(folder / CHECKSUMS_FILE, {"algorithm": "sha256", "files": files})
    (folder / CHECKSUMS_FILE).chmod(0o644)
    return files


def read_model_json(path: str | Path, *, what: str, hint: str = "") -> dict:
    """A model folder's JSON metadata file, verified, as a dict.

    Raises FileNotFoundError when missing (naming `what` and `hint`), ChecksumMismatch, or
    ModelFileError naming the file when it is not a JSON object (truncated, not JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} here" + (f" ({hint})" if hint else ""))
    verify_model_file(path)
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not a {what} file: invalid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: not a {what} file: expected a JSON object, got {type(meta).__name__}")
    return meta


def onnx_session(path: str | Path, threads: int = 1, *, what: str, hint: str = ""):
    """`vad_turn.core.onnx.cpu_session` of a verified model file.

    Raises FileNotFoundError when missing, ChecksumMismatch, or ModelFileError naming the file when
    onnxruntime cannot load it (truncated or corrupt graph)."""
    from .onnx import cpu_session

    path = Path(path)
    if path.is_file():
        verify_model_file(path)
    try:
        return cpu_session(path, threads, what=what, hint=hint)
    except FileNotFoundError:
        raise
    except Exception as e:  # onnxruntime raises its own Exception subclasses (InvalidProtobuf, Fail, ...)
        raise ModelFileError(f"{what}: cannot load ONNX file {path}: truncated or corrupt "
                             f"({type(e).__name__}: {e})" + (f"; {hint}" if hint else "")) from e
