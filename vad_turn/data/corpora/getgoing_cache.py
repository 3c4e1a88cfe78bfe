"""Per-call cache of the GetGoing builder's expensive steps, so reruns and interrupted builds are quick.

Layout under the cache folder (default data/cache/getgoing, git-ignored):

    vad-<key>/<uuid>-<audio>.npy    Silero speech probabilities, float32 (n_frames,), one per 32 ms frame;
                                    key: sha256 of the ONNX model file
    asr-<key>/<uuid>-<audio>.json   recognised words [[word, start_s, end_s, probability], ...] (call times);
                                    key: the VAD key, the region and ASR parameters, the Whisper model file
    refill-<key>/<uuid>-<audio>.json  the second pass: {"segments": [[start_s, end_s], ...], "words": [...]};
                                    key: the ASR key and the refill parameters

<audio> is the first 16 hex digits of the sha256 of the call's `user.ogg` bytes the entry was computed
from: an entry is found by content, never by call id alone, so a changed or truncated recording is
recomputed (its old entries stay). Entries of the earlier layout (`<uuid>.npy`, keyed by call id only)
are not read.

Every file is written atomically (temporary file + rename), so a killed build leaves only complete
entries and the next run resumes with the calls not yet cached. The speech regions are recomputed
from the cached probabilities (milliseconds), so changing the VAD thresholds reruns only the ASR.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.core.runs import atomic_path, atomic_write_text

from .getgoing_inputs import file_sha256
from .getgoing_speech import AsrParams, RefillParams, VadParams, empty_segments, speech_regions




def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, arr)


class SpeechCache:
    """Speech regions and recognised words per call, computed once (models load on the first miss)."""

    def __init__(self, root: Path, vad: VadParams, asr: AsrParams, refill: RefillParams = RefillParams()):
        from vad_turn.engines.stt import whisper_model_path
        from vad_turn.engines.vad import silero_model_path

        self.root, self.vad_params, self.asr_params, self.refill = Path(root), vad, asr, refill
        vad_key = file_sha256(silero_model_path())[:12]
        asr_blob = json.dumps({"vad": vad_key, "regions": asdict(vad), "asr": asdict(asr),
                               "whisper": file_sha256(Path(whisper_model_path()) / "model.bin")[:12]}, sort_keys=True)
        asr_key = hashlib.sha256(asr_blob.encode()).hexdigest()[:12]
        self.vad_dir, self.asr_dir = self.root / f"vad-{vad_key}", self.root / f"asr-{asr_key}"
        refill_key = hashlib.sha256(json.dumps({"asr": asr_key, "refill": asdict(refill)}, sort_keys=True).encode())
        self.refill_dir = self.root / f"refill-{refill_key.hexdigest()[:12]}"
        self._models = None

    def models(self):
        if self._models is None:
            from .getgoing_speech import SpeechModels

            self._models = SpeechModels(self.asr_params)
        return self._models

    def regions_and_words(self, uuid: str, audio: np.ndarray, audio_sha256: str) -> tuple[list, list, bool]:
        """(speech regions, recognised words, whether both came from the cache) of one call's audio.

        audio: float32 (n_samples,), 16 kHz mono, decoded from the `user.ogg` bytes whose sha256 (hex) is
        `audio_sha256`: the entries are keyed by it."""
        if not (isinstance(audio_sha256, str) and len(audio_sha256) >= 16):
            raise ValueError(f"call {uuid}: the speech cache needs the sha256 of its audio, got {audio_sha256!r}")
        name = f"{uuid}-{audio_sha256[:16]}"
        hit = True
        vad_path = self.vad_dir / f"{name}.npy"
        if vad_path.exists():
            probs = np.load(vad_path)
        else:
            hit = False
            probs = self.models().vad_probs(audio).astype(np.float32)
            _save_npy(vad_path, probs)
        regions = speech_regions(probs, self.vad_params, audio_end_s=audio.size / SAMPLE_RATE_HZ)
        asr_path = self.asr_dir / f"{name}.json"
        if asr_path.exists():
            words = [tuple(w) for w in json.loads(asr_path.read_text())["words"]]
        else:
            hit = False
            words = self.models().transcribe_regions(audio, regions) if regions else []
            atomic_write_text(asr_path, json.dumps({"uuid": uuid, "audio_sha256": audio_sha256,
                                                    "words": [list(w) for w in words]}) + "\n")
        if self.refill.enabled and regions:
            refill_path = self.refill_dir / f"{name}.json"
            if refill_path.exists():
                extra = [tuple(w) for w in json.loads(refill_path.read_text())["words"]]
            else:
                hit = False
                segs = empty_segments(regions, words, audio.size / SAMPLE_RATE_HZ, self.asr_params, self.refill)
                extra = [w for a, b in segs for w in self.models().transcribe_segment(audio, a, b)]
                atomic_write_text(refill_path, json.dumps({"uuid": uuid, "audio_sha256": audio_sha256,
                                                           "segments": [list(s) for s in segs],
                                                           "words": [list(w) for w in extra]}) + "\n")
            words = sorted(words + extra, key=lambda w: (w[1], w[2]))
        return regions, words, hit
