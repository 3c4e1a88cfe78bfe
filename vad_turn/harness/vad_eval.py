"""Frame-level evaluation of the streaming VADs on the hand-labelled TEN VAD test set.

The test set (`<data root>/ten_vad_testset`) holds 30 real 16 kHz clips `testset-audio-NN.wav`,
each with `testset-audio-NN.scv`: one line `id,start_s,end_s,label,start_s,end_s,label,...`
(label 1 = speech, 0 = non-speech) whose segments tile the whole clip. A wav without a label
file (`extra_s0724-s0730.wav`) is skipped and listed in the report.

Scoring uses a common 10 ms reference grid: cell k covers `[k, k+1) * grid_s` (only whole cells),
is speech if its centre lies in a labelled speech segment, and takes the output of the VAD frame
that contains its centre. Precision, recall and F1 of `prob >= threshold` and ROC-AUC (for VADs
giving a probability) are pooled over all clips, per audio condition (clean, simulated 8 kHz
telephone channel, added noise at a given SNR). Cost: median microseconds per `process` call
(time.perf_counter around each call, onnxruntime on 1 thread) and real-time factor (total
`process` time / audio duration), measured on the clean condition.

    .venv/bin/vad-turn vad-eval            # writes runs/vad_eval/{config.json,commit.txt,metrics.json,report.md}
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, add_noise, load_audio, telephony_8k
from vad_turn.core.config import default_data_root, default_runs_root
from vad_turn.core.runs import RunFolder, atomic_write_text
from vad_turn.engines.vad import make_vad, run_vad_timed


@dataclass(frozen=True)
class VadEvalConfig:
    testset_dir: Path | None = field(default=None, metadata={"help": "TEN VAD test set folder; none = <data root>/ten_vad_testset"})
    vads: tuple[str, ...] = field(default=("energy", "webrtc", "silero", "ten"), metadata={"help": "VADs to evaluate"})
    webrtc_aggressiveness: tuple[int, ...] = field(default=(0, 1, 2, 3), metadata={"help": "one webrtc row per aggressiveness"})
    webrtc_frame_ms: int = field(default=30, metadata={"help": "webrtc frame length (10, 20 or 30 ms)"})
    conditions: tuple[str, ...] = field(
        default=("clean", "telephony_8k", "noisy_10db"),
        metadata={"help": "audio conditions: clean, telephony_8k, noisy_<snr>db"},
    )
    grid_ms: float = field(default=10.0, metadata={"help": "reference grid cell length"})
    threshold: float = field(default=0.5, metadata={"help": "decision threshold for probabilistic VADs"})
    max_clips: int | None = field(default=None, metadata={"help": "use only the first N labelled clips; none = all"})
    advance_frames: int = field(
        default=0,
        metadata={"help": "diagnostic only, not causal: score frame i+N's output as frame i's (shows each VAD's output lag)"},
    )
    noise_seed: int = field(default=0, metadata={"help": "seed of the added noise (clip i uses seed + i)"})
    out_dir: Path | None = field(default=None, metadata={"help": "run folder; none = <runs root>/vad_eval"})


# ----------------------------------------------------------------------------- labels


def load_labels(scv_path: Path) -> list[tuple[float, float, int]]:
    """Parse a `.scv` label file -> [(start_s, end_s, label)], label 1 = speech, 0 = non-speech.

    Raises ValueError naming the file and line for a malformed file (wrong field count,
    non-numbers, labels other than 0/1, segments that are reversed or overlap).
    """
    scv_path = Path(scv_path)
    lines = [ln for ln in scv_path.read_text().splitlines() if ln.strip()]
    if len(lines) != 1:
        raise ValueError(f"{scv_path}: expected exactly one non-empty line, found {len(lines)}")
    fields = [f.strip() for f in lines[0].split(",")]
    where = f"{scv_path}:1"
    if len(fields) < 4 or (len(fields) - 1) % 3:
        raise ValueError(f"{where}: expected id followed by start,end,label triples, got {len(fields)} fields")
    segs: list[tuple[float, float, int]] = []
    for i in range(1, len(fields), 3):
        try:
            start_s, end_s, label = float(fields[i]), float(fields[i + 1]), int(fields[i + 2])
        except ValueError:
            raise ValueError(f"{where}: field {i + 1}: not start,end,label numbers: {fields[i:i + 3]}") from None
        if label not in (0, 1) or not (0.0 <= start_s <= end_s):
            raise ValueError(f"{where}: field {i + 1}: bad segment {fields[i:i + 3]}")
        if segs and start_s < segs[-1][1] - 1e-6:
            raise ValueError(f"{where}: field {i + 1}: segment starts at {start_s} before the previous ends at {segs[-1][1]}")
        segs.append((start_s, end_s, label))
    return segs


def list_clips(testset_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """-> ([(clip_id, wav_path, scv_path)] sorted by id, [names of wavs without a label file])."""
    testset_dir = Path(testset_dir)
    if not testset_dir.is_dir():
        raise FileNotFoundError(f"TEN VAD test set folder not found: {testset_dir}")
    clips, unlabelled = [], []
    for wav in sorted(testset_dir.glob("*.wav")):
        scv = wav.with_suffix(".scv")
        if scv.is_file():
            clips.append((wav.stem, wav, scv))
        else:
            unlabelled.append(wav.name)
    if not clips:
        raise FileNotFoundError(f"{testset_dir}: no labelled clips (*.wav with a matching *.scv)")
    return clips, unlabelled


# ----------------------------------------------------------------------------- grid + metrics


def reference_cells(segments: list[tuple[float, float, int]], n_cells: int, grid_s: float) -> np.ndarray:
    """bool (n_cells,): cell k is speech if its centre (k + 0.5) * grid_s lies in a speech segment [start, end)."""
    centres_s = (np.arange(n_cells) + 0.5) * grid_s
    ref = np.zeros(n_cells, dtype=bool)
    for start_s, end_s, label in segments:
        if label == 1:
            ref |= (centres_s >= start_s) & (centres_s < end_s)
    return ref


def frames_to_cells(probs: np.ndarray, frame_samples: int, n_cells: int, cell_samples: int) -> np.ndarray:
    """VAD outputs (n_frames,) -> (n_cells,): each cell takes the frame that contains its centre sample."""
    centre_samples = np.arange(n_cells) * cell_samples + cell_samples // 2
    idx = centre_samples // frame_samples
    if n_cells and idx[-1] >= len(probs):
        raise ValueError(f"{len(probs)} frames of {frame_samples} samples do not cover {n_cells} cells")
    return np.asarray(probs)[idx]


def frame_metrics(ref: np.ndarray, probs: np.ndarray, threshold: float = 0.5, with_auc: bool = True) -> dict:
    """Precision/recall/F1 of `probs >= threshold` against bool `ref` (both (n_cells,)); ROC-AUC of `probs`.

    Undefined ratios (no predicted or no reference speech) are NaN; so is AUC with one class
    only or `with_auc=False`.
    """
    ref = np.asarray(ref, dtype=bool)
    pred = np.asarray(probs) >= threshold
    tp, fp = int(np.sum(pred & ref)), int(np.sum(pred & ~ref))
    fn, tn = int(np.sum(~pred & ref)), int(np.sum(~pred & ~ref))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    auc = float("nan")
    if with_auc and 0 < ref.sum() < ref.size:
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(ref, probs))
    return {"precision": precision, "recall": recall, "f1": f1, "auc": auc,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn, "n_cells": int(ref.size), "speech_fraction": float(ref.mean()) if ref.size else float("nan")}


# ----------------------------------------------------------------------------- evaluation


def apply_condition(audio_16k: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """clean | telephony_8k (down to 8 kHz and back) | noisy_<snr>db (vad_turn.core.audio.add_noise)."""
    if condition == "clean":
        return audio_16k
    if condition == "telephony_8k":
        return telephony_8k(audio_16k)
    m = re.fullmatch(r"noisy_(-?\d+(?:\.\d+)?)db", condition)
    if m:
        return add_noise(audio_16k, float(m.group(1)), seed)
    raise ValueError(f"unknown audio condition {condition!r}; use clean, telephony_8k or noisy_<snr>db")


def advance(probs: np.ndarray, n_frames: int) -> np.ndarray:
    """(n,) -> (n,): output i becomes output i + n_frames (the last output repeated at the end)."""
    if n_frames <= 0 or probs.size == 0:
        return probs
    k = min(n_frames, probs.size - 1)
    return np.concatenate([probs[k:], np.repeat(probs[-1:], k)])


def vad_rows(cfg: VadEvalConfig) -> list[tuple[str, str, dict]]:
    """[(row label, VAD name, constructor kwargs)], one webrtc row per aggressiveness."""
    rows = []
    for name in cfg.vads:
        if name == "webrtc":
            rows += [(f"webrtc-a{a}", "webrtc", {"aggressiveness": a, "frame_ms": cfg.webrtc_frame_ms}) for a in cfg.webrtc_aggressiveness]
        else:
            rows.append((name, name, {"threshold": cfg.threshold}))
    return rows


def evaluate(cfg: VadEvalConfig, progress: bool = True) -> dict:
    """Run every VAD row on every labelled clip under every condition -> the metrics dict."""
    from tqdm import tqdm

    testset_dir = cfg.testset_dir or default_data_root() / "ten_vad_testset"
    clips, unlabelled = list_clips(testset_dir)
    if cfg.max_clips is not None:
        clips = clips[: cfg.max_clips]
    cell_samples = int(round(cfg.grid_ms * SAMPLE_RATE_HZ / 1000))
    grid_s = cell_samples / SAMPLE_RATE_HZ
    clean = [load_audio(wav) for _, wav, _ in clips]
    refs = []
    for (_, wav, scv), audio in zip(clips, clean):
        segs = load_labels(scv)
        dur_s = audio.size / SAMPLE_RATE_HZ
        if abs(segs[-1][1] - dur_s) > 0.05 or segs[0][0] > 0.05:
            raise ValueError(f"{scv}: labels span {segs[0][0]}-{segs[-1][1]} s but {wav.name} lasts {dur_s:.3f} s")
        refs.append(reference_cells(segs, audio.size // cell_samples, grid_s))
    total_s = sum(a.size for a in clean) / SAMPLE_RATE_HZ
    out = {"testset_dir": str(testset_dir), "clips": [c[0] for c in clips], "unlabelled_skipped": unlabelled,
           "total_audio_s": total_s, "advance_frames": cfg.advance_frames, "grid_ms": grid_s * 1000, "speech_fraction": float(np.concatenate(refs).mean()),
           "rows": {}}
    rows = vad_rows(cfg)
    bar = tqdm(total=len(rows) * len(cfg.conditions) * len(clips), desc="vad-eval", disable=not progress)
    for label, name, kw in rows:
        vad = make_vad(name, **kw)
        row = {"vad": name, "kwargs": kw, "frame_ms": vad.frame_s * 1000, "gives_probability": vad.gives_probability,
               "threshold": vad.threshold, "conditions": {}}
        for condition in cfg.conditions:
            cells, per_clip_f1, call_s = [], {}, []
            for i, ((clip_id, wav, _), audio, ref) in enumerate(zip(clips, clean, refs)):
                x = apply_condition(audio, condition, cfg.noise_seed + i)
                _, probs, calls = run_vad_timed(vad, x, source=str(wav))
                probs = advance(probs, cfg.advance_frames)
                c = frames_to_cells(probs, vad.frame_samples, ref.size, cell_samples)
                cells.append(c)
                call_s.append(calls)
                per_clip_f1[clip_id] = frame_metrics(ref, c, vad.threshold, with_auc=False)["f1"]
                bar.update()
            m = frame_metrics(np.concatenate(refs), np.concatenate(cells), vad.threshold, with_auc=vad.gives_probability)
            m["per_clip_f1"] = per_clip_f1
            if condition == "clean":
                calls = np.concatenate(call_s)
                row["us_per_frame_median"] = float(np.median(calls) * 1e6)
                row["rtf"] = float(calls.sum() / total_s)
            row["conditions"][condition] = m
        out["rows"][label] = row
    bar.close()
    return out


def _fmt(v: float, nd: int = 3) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def format_report(metrics: dict) -> str:
    """Markdown: the clean table (P/R/F1/AUC/cost), then F1 and AUC per condition."""
    rows = metrics["rows"]
    conditions = list(next(iter(rows.values()))["conditions"]) if rows else []
    lines = [
        "# VAD baselines on the TEN VAD test set",
        "",
        f"{len(metrics['clips'])} hand-labelled real clips ({metrics['total_audio_s']:.1f} s, "
        f"{100 * metrics['speech_fraction']:.1f}% speech), {metrics['grid_ms']:g} ms reference grid, pooled over clips. "
        f"Skipped (no label file): {', '.join(metrics['unlabelled_skipped']) or 'none'}.",
        "Threshold 0.5 for probabilistic VADs; webrtc is binary (aX = aggressiveness X), so no AUC. "
        "µs/frame: median time per `process` call (1 thread); RTF: total process time / audio duration.",
        "",
    ]
    if metrics.get("advance_frames"):
        lines += [f"**Diagnostic, not causal:** outputs advanced by {metrics['advance_frames']} native frames.", ""]
    if "clean" in conditions:
        lines += ["## Clean", "", "| VAD | frame ms | precision | recall | F1 | AUC | µs/frame | RTF |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for label, r in rows.items():
            m = r["conditions"]["clean"]
            lines.append(
                f"| {label} | {r['frame_ms']:g} | {_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['f1'])} | "
                f"{_fmt(m['auc'])} | {_fmt(r['us_per_frame_median'], 1)} | {_fmt(r['rtf'], 5)} |"
            )
        lines.append("")
    lines += ["## By audio condition (F1 / AUC)", "", "| VAD | " + " | ".join(conditions) + " |", "|---|" + "---:|" * len(conditions)]
    for label, r in rows.items():
        cells = [f"{_fmt(r['conditions'][c]['f1'])} / {_fmt(r['conditions'][c]['auc'])}" for c in conditions]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Data: TEN VAD test set (TEN framework, Apache-2.0 with additional conditions; clips from "
              "LibriSpeech, GigaSpeech and the DNS challenge).", ""]
    return "\n".join(lines)


def run(cfg: VadEvalConfig) -> dict:
    """Evaluate, write the run folder (config.json, commit.txt, metrics.json, report.md), print the report."""
    folder = RunFolder(cfg.out_dir or default_runs_root() / "vad_eval", cfg)
    metrics = evaluate(cfg)
    folder.write_split_ids({"test": metrics["clips"]})
    folder.write_metrics(metrics)
    report = format_report(metrics)
    atomic_write_text(folder.file("report.md"), report)
    print(report)
    print(f"written to {folder.path}")
    return metrics

