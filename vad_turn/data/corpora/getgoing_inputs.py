"""What a GetGoing build reads, by content: the input files of each call, their sha256, the Ogg check, and
the comparison of a new build with the one it replaces.

A call folder `calls/<uuid>/` is usable when it holds `user.ogg` and `log.json` (`REQUIRED`); a folder
without them is named and skipped. The builder keys everything by content, never by call id alone:
the build hash covers the sha256 of every selected call's `user.ogg`, `log.json` and `metadata.json`
(`HASHED`), and the per-call speech cache is keyed by the sha256 of the `user.ogg` it was computed from
(`getgoing_cache`), so a changed recording is recomputed and a changed input makes the build out of date.

`ogg_problem` names a `user.ogg` that decodes short: every published GetGoing file ends with a complete
Ogg page flagged end-of-stream, and decodes to exactly its last granule position (less the Opus
pre-skip); a truncated file does not.

`lost_calls` compares the per-call turn counts of the previous build with the new one: one line per
call that would lose turns, with why (an input changed, a file decodes short or not at all, the call
is not selected). The builder refuses such a build (non-zero exit) unless `--allow-shrink`.
"""
from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, decode_audio_bytes

REQUIRED = ("user.ogg", "log.json")
HASHED = ("user.ogg", "log.json", "metadata.json")
_OGG_RATE_HZ = 48_000  # Opus granule positions count 48 kHz samples
_SHORT_TOLERANCE_S = 0.05


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def missing_inputs(call_dir: Path) -> list[str]:
    """The REQUIRED files `call_dir` lacks (empty: the call can be built)."""
    return [name for name in REQUIRED if not (Path(call_dir) / name).is_file()]


def call_digests(call_dir: Path, skip: tuple[str, ...] = ()) -> dict[str, str | None]:
    """{file name: sha256 hex} of the call's HASHED files but `skip` (None for one that is absent)."""
    return {name: file_sha256(Path(call_dir) / name) if (Path(call_dir) / name).is_file() else None
            for name in HASHED if name not in skip}


def _ogg_pages(data: bytes):
    """(header_type, granule_position, complete) of each Ogg page found in `data`, in order."""
    i = 0
    while True:
        j = data.find(b"OggS", i)
        if j < 0:
            return
        if j + 27 > len(data):
            yield 0, -1, False
            return
        header_type, granule, n_segments = data[j + 5], struct.unpack_from("<q", data, j + 6)[0], data[j + 26]
        if j + 27 + n_segments > len(data):
            yield header_type, granule, False
            return
        size = 27 + n_segments + sum(data[j + 27: j + 27 + n_segments])
        yield header_type, granule, j + size <= len(data)
        i = j + size


def ogg_problem(data: bytes, decoded_s: float | None = None) -> str | None:
    """Why an Ogg Opus file decodes short, or None when it is whole: its last page is cut or not flagged
    end-of-stream (the file was truncated), or `decoded_s` (seconds decoded) falls short of the duration its
    last granule position states (less the Opus pre-skip) by more than 0.05 s."""
    pages = list(_ogg_pages(data))
    if not pages:
        return "is not an Ogg stream (no Ogg page)"
    header_type, granule, complete = pages[-1]
    pre_skip = 0
    head = data.find(b"OpusHead")
    if head >= 0 and head + 12 <= len(data):
        pre_skip = struct.unpack_from("<H", data, head + 10)[0]
    stated_s = max(0, granule - pre_skip) / _OGG_RATE_HZ if granule >= 0 else None
    if not complete:
        return (f"ends inside an Ogg page ({len(data)} bytes): the file is truncated"
                + (f", it decodes to {decoded_s:.2f} s" if decoded_s is not None else ""))
    if not header_type & 0x04:
        return (f"has no end-of-stream page: the file is truncated"
                + (f", it decodes to {decoded_s:.2f} s" if decoded_s is not None else ""))
    if decoded_s is not None and stated_s is not None and decoded_s < stated_s - _SHORT_TOLERANCE_S:
        return f"decodes to {decoded_s:.2f} s of the {stated_s:.2f} s its last Ogg page states"
    return None


def read_call_audio(call_dir: Path) -> tuple[np.ndarray | None, dict, str | None]:
    """(audio float32 (n_samples,) 16 kHz mono or None, {file: sha256} of the call's inputs, problem or None).

    The audio is decoded from the very bytes hashed, so the digest names what was decoded. A file that does
    not decode gives audio None; one that decodes short (`getgoing_inputs.ogg_problem`) gives what decodes."""
    path = call_dir / "user.ogg"
    data = path.read_bytes()
    inputs = {**call_digests(call_dir, skip=("user.ogg",)), "user.ogg": hashlib.sha256(data).hexdigest()}
    try:
        audio = decode_audio_bytes(data, source=str(path))
    except AudioError as e:
        return None, inputs, f"user.ogg does not decode ({len(data)} bytes): {e}"
    short = ogg_problem(data, audio.size / SAMPLE_RATE_HZ)
    return audio, inputs, None if short is None else f"user.ogg {short}"


def _short(digest: str | None) -> str:
    return "absent" if digest is None else digest[:12]


def why_changed(old: dict | None, new: dict | None) -> str:
    """Why a call's turns may differ between two builds, from their manifest entries (`call_manifest`)."""
    if new is None:
        return "not selected in this build"
    changed = [] if old is None else [
        f"{name} changed: sha256 {_short(old['inputs'].get(name))} -> {_short(new['inputs'].get(name))}"
        for name in HASHED if old.get("inputs", {}).get(name) != new["inputs"].get(name)]
    if new.get("problem"):
        changed.append(new["problem"])
    if changed:
        return "; ".join(changed)
    if old is None:
        return "the previous build recorded no inputs for it"
    if new.get("drop_reason"):
        return f"inputs unchanged, call dropped now: {new['drop_reason']}"
    return "inputs unchanged: the recipe, options or builder changed"


def lost_calls(old_turns: dict[str, int], old_manifest: dict[str, dict], new_manifest: dict[str, dict]) -> list[str]:
    """One line per call that has fewer turns in the new build than in the old one, naming why:
    "call <uuid>: 5 -> 3 turns (user.ogg changed: sha256 1a2b... -> 3c4d...)"."""
    out = []
    for uuid in sorted(old_turns):
        before = old_turns[uuid]
        new = new_manifest.get(uuid)
        after = new["n_turns"] if new is not None else 0
        if after < before:
            out.append(f"call {uuid}: {before} -> {after} turns ({why_changed(old_manifest.get(uuid), new)})")
    return out
