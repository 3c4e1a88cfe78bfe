"""Rendered-audio turn datasets: real Switchboard / SBCSAE turns spoken by several TTS voices.

Each source turn (a text row of `data/built/<corpus>`) is cut into inter-pausal units (IPUs: the
words between its holds, i.e. its silence spans except the last). Every IPU's normalised text
(`schema.normalize_text`) is synthesized with the turn's voice, the engine's own leading/trailing
silence is trimmed (`vad_turn.core.audio.trim_silence`, -40 dB), and the IPUs are joined with digital
silence of the turn's real hold durations. A lead-in (`lead_in_s`) precedes the first word and a
fixed end-of-turn silence (`tail_s`) follows the last, so causal scoring can query any timeout.
The IPU boundaries and therefore every silence span are exact (to one sample); word times inside
an IPU are interpolated in proportion to each word's normalised character count
(word_timing "interpolated").

Voice, rate jitter and noise come from `numpy.random.default_rng([seed, hash(turn id)])`, so a
turn's rendering does not depend on which other turns are selected or in what order. Work goes
in shards written atomically under `out_root/.render-work/`; a rerun skips finished shards, and
the final datasets `out_root/<corpus>-rendered` are written with `dataset.write_turns`.
build_info.json holds counts per split/condition, voices, skipped turns, rendering speed per
engine (engine output seconds, its own lead/trail silence included, per synthesis wall second,
summed over workers) and how many IPUs hold an engine-made silence >= 0.1 s that no span marks.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, add_noise, encode_wav_bytes, seconds_to_samples, telephony_8k
from vad_turn.core.config import REPO_ROOT, config_to_dict, default_built_root
from vad_turn.core.runs import atomic_path, atomic_write_json
from vad_turn.core.seeds import seeded_order, stable_seed
from vad_turn.core.schema import (
    Span,
    TurnRecord,
    Word,
    normalize_text,
    normalize_word,
    row_messages,
    row_spans,
    row_words,
)

RECIPE_PATH = REPO_ROOT / "data" / "recipes" / "render.json"
_DEFAULT_VOICE_IDS = ("espeak:en-us", "espeak:en-us+f3", "espeak:en+m3", "flite:slt", "flite:rms", "flite:awb",
                      "festival:cmu_us_slt_arctic_hts")


@dataclass(frozen=True)
class RenderConfig:
    built_root: Path = field(default_factory=default_built_root, metadata={"help": "folder of the text turn datasets"})
    out_root: Path = field(default_factory=default_built_root, metadata={"help": "where <corpus>-rendered goes"})
    corpora: tuple[str, ...] = field(default=("switchboard", "sbcsae"), metadata={"help": "datasets under built_root"})
    splits: tuple[str, ...] = field(default=("train", "dev", "test"), metadata={"help": "splits to render (if present)"})
    max_turns: tuple[str, ...] = field(
        default=("switchboard:train=600", "switchboard:dev=300", "sbcsae:*=300"),
        metadata={"help": "caps as corpus:split=N ('*' = any split); turns are drawn by a seeded hash of the id"},
    )
    min_words: int = field(default=1, metadata={"help": "skip shorter turns"})
    max_words: int = field(default=40, metadata={"help": "skip longer turns"})
    seed: int = field(default=0, metadata={"help": "voice choice, rate jitter, noise and selection"})
    voices: tuple[str, ...] = field(default=_DEFAULT_VOICE_IDS, metadata={"help": "voice ids engine:name[*rate][^pitch]"})
    rate_jitter: float = field(default=0.08, metadata={"help": "speaking rate x uniform(1-j, 1+j) per turn"})
    lead_in_s: float = field(default=0.2, metadata={"help": "silence before the first word"})
    tail_s: float = field(default=5.0, metadata={"help": "end-of-turn silence after the last word"})
    condition_splits: tuple[str, ...] = field(default=("dev", "test"), metadata={"help": "splits also rendered 8k and noisy"})
    noise_snr_db: float = field(default=10.0, metadata={"help": "SNR of the noisy condition"})
    shard_size: int = field(default=100, metadata={"help": "turns per resumable shard"})
    workers: int = field(default=2, metadata={"help": "rendering processes (1 = in this process)"})
    espeak_backend: str = field(default="cli", metadata={"help": "cli (byte-reproducible) or lib (in process)"})
    espeak_bin: str = field(default="espeak-ng", metadata={"help": "espeak-ng executable (name on PATH or path)"})
    flite_bin: str = field(default="flite", metadata={"help": "flite executable (name on PATH or path)"})
    festival_bin: str = field(default="festival", metadata={"help": "festival executable (name on PATH or path)"})
    whole_turn: bool = field(default=False, metadata={
        "help": "synthesise each turn as one utterance and cut it at its holds (word times by forced alignment, "
                "vad_turn.data.align), so a hold keeps the sentence's continuation intonation; writes "
                "<corpus>-rendered-utt"})


def rendered_name(corpus: str, cfg: RenderConfig) -> str:
    """The rendered dataset's folder name: <corpus>-rendered, or <corpus>-rendered-utt for whole-turn renders."""
    return f"{corpus}-rendered" + ("-utt" if cfg.whole_turn else "")


def load_recipe(path: Path = RECIPE_PATH, **overrides) -> RenderConfig:
    """RenderConfig from a recipe JSON (field names as keys; missing keys keep their defaults)."""
    raw = json.loads(Path(path).read_text())
    names = {f.name for f in dataclasses.fields(RenderConfig)}
    unknown = set(raw) - names - {"comment"}
    if unknown:
        raise ValueError(f"{path}: unknown recipe keys {sorted(unknown)}")
    vals = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in names}
    vals.update(overrides)
    return RenderConfig(**{k: Path(v) if k in ("built_root", "out_root") else v for k, v in vals.items()})


def _paths(cfg: RenderConfig):
    from vad_turn.engines.tts import EnginePaths

    return EnginePaths(cfg.espeak_backend, "", cfg.espeak_bin, cfg.flite_bin, cfg.festival_bin)


def turn_voice(turn_id: str, cfg: RenderConfig):
    """(voice id from cfg.voices, Voice with the jittered rate) for `turn_id`: a function of (seed, id) only."""
    from vad_turn.engines.tts import Voice, voice_from_id

    rng = np.random.default_rng([cfg.seed, stable_seed("voice", turn_id)])
    voice_id = cfg.voices[int(rng.integers(len(cfg.voices)))]
    base = voice_from_id(voice_id)
    rate = float(np.clip(base.rate * rng.uniform(1 - cfg.rate_jitter, 1 + cfg.rate_jitter), 0.5, 2.0))
    return voice_id, Voice(base.engine, base.name, round(rate, 4), base.pitch)


def _cap(cfg: RenderConfig, corpus: str, split: str) -> int | None:
    for spec in cfg.max_turns:
        key, _, n = spec.partition("=")
        c, _, s = key.partition(":")
        if c == corpus and s in (split, "*"):
            return int(n)
    return None


def ipus(words: list[Word], spans: list[Span]) -> list[list[int]]:
    """Word indices of each inter-pausal unit: words split at the holds (all spans but the last).

    Raises ValueError when a hold does not fall between two words.
    """
    bounds = []
    for h in spans[:-1]:
        k = next((i for i, w in enumerate(words) if w.start >= h.end - 1e-6), None)
        if k is None or k == 0 or words[k - 1].end > h.start + 1e-6:
            raise ValueError(f"hold {h} does not separate two words")
        bounds.append(k)
    edges = [0, *bounds, len(words)]
    if any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise ValueError("empty inter-pausal unit")
    return [list(range(a, b)) for a, b in zip(edges[:-1], edges[1:])]


def assemble_turn(row: dict, ipu_audio: list[np.ndarray], voice_id: str, *, source: str, lead_in_s: float,
                  tail_s: float) -> TurnRecord:
    """Join trimmed IPU audio (float32 16 kHz, one per IPU of `row`) with the row's real hold durations.

    Returns a TurnRecord (audio_condition "clean") whose spans are the holds at their real
    durations plus a `tail_s` end span; the first word starts at `lead_in_s`.
    """
    words, spans = row_words(row), row_spans(row)
    groups = ipus(words, spans)
    if len(groups) != len(ipu_audio):
        raise ValueError(f"{row['id']}: {len(groups)} IPUs but {len(ipu_audio)} audio pieces")
    pieces = [np.zeros(seconds_to_samples(lead_in_s), np.float32)]
    n = pieces[0].size
    out_words, out_spans = [], []
    for k, (idx, audio) in enumerate(zip(groups, ipu_audio)):
        t0, dur = n / SAMPLE_RATE_HZ, audio.size / SAMPLE_RATE_HZ
        weights = np.array([len(normalize_word(words[i].word)) for i in idx], dtype=float)
        cum = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum()
        out_words += [Word(words[i].word, t0 + dur * cum[j], t0 + dur * cum[j + 1]) for j, i in enumerate(idx)]
        pieces.append(audio.astype(np.float32))
        n += audio.size
        gap = seconds_to_samples(spans[k].duration_s) if k < len(groups) - 1 else seconds_to_samples(tail_s)
        out_spans.append(Span(n / SAMPLE_RATE_HZ, (n + gap) / SAMPLE_RATE_HZ))
        pieces.append(np.zeros(gap, np.float32))
        n += gap
    turn_id = f"{row['id']}@{voice_id}"
    return TurnRecord(
        id=turn_id, source=source, split=row.get("split", ""), words=out_words, silence_spans=out_spans,
        messages=row_messages(row), language=row.get("language") or "en",
        audio={"bytes": encode_wav_bytes(np.concatenate(pieces)), "path": f"{turn_id}.wav"},
        pause_context=list(row["pause_context"]) if row.get("pause_context") else None,
        unit_punct=list(row["unit_punct"]) if row.get("unit_punct") else None,
        backchannel_context=bool(row.get("backchannel_context")), audio_condition="clean", voice=voice_id,
        word_timing="interpolated", conversation=row.get("conversation") or "", speaker=row.get("speaker") or "",
    )


def condition_variant(rec: TurnRecord, condition: str, audio: np.ndarray, snr_db: float, seed: int) -> TurnRecord:
    """The same turn through an 8 kHz telephone channel ("8k") or with noise at `snr_db` ("noisy")."""
    if condition == "8k":
        out = telephony_8k(audio)
    elif condition == "noisy":
        out = add_noise(audio, snr_db, seed=stable_seed(seed, "noise", rec.id) % 2**32)
    else:
        raise ValueError(f"unknown audio condition {condition!r} (expected 8k or noisy)")
    new_id = f"{rec.id}+{condition}"
    return dataclasses.replace(rec, id=new_id, audio={"bytes": encode_wav_bytes(out), "path": f"{new_id}.wav"},
                               audio_condition=condition)


def render_rows(rows: list[dict], cfg: RenderConfig, corpus: str) -> dict:
    """Render source rows (one shard): {"records", "skipped": [(id, reason)], "engine_stats", "internal_gaps"}."""
    from vad_turn.core.audio import decode_audio_bytes, low_energy_gaps, trim_silence
    from vad_turn.engines.tts import synthesize_many

    from .align import split_at_holds

    paths = _paths(cfg)
    plans, by_voice = {}, {}
    skipped = []
    for row in rows:
        try:
            groups = ipus(row_words(row), row_spans(row))
        except ValueError as e:
            skipped.append((row["id"], str(e)))
            continue
        texts = [normalize_text(row["words"][i]["word"] for i in g) for g in groups]
        if cfg.whole_turn:  # one utterance; cut at the holds after synthesis
            texts = [" ".join(texts)] if all(texts) else texts
        if not all(texts):
            skipped.append((row["id"], "an inter-pausal unit has no speakable words"))
            continue
        voice_id, voice = turn_voice(row["id"], cfg)
        plans[row["id"]] = (voice_id, voice, texts)
        by_voice.setdefault(voice, []).append(row["id"])
    audio_by_id, stats = {}, {}
    for voice, ids in sorted(by_voice.items(), key=lambda kv: kv[0].id):
        texts = [t for i in ids for t in plans[i][2]]
        t0 = time.perf_counter()
        outs = synthesize_many(texts, voice, paths=paths)
        st = stats.setdefault(voice.engine, {"audio_s": 0.0, "wall_s": 0.0, "n_ipus": 0})
        st["wall_s"] += time.perf_counter() - t0
        st["audio_s"] += sum(a.size for a in outs) / SAMPLE_RATE_HZ
        st["n_ipus"] += len(outs)
        pos = 0
        for i in ids:
            k = len(plans[i][2])
            audio_by_id[i] = outs[pos:pos + k]
            pos += k
    records, gaps = [], {"n_ipus": 0, "n_with_internal_gap": 0}
    aligner = _aligner() if cfg.whole_turn else None
    for row in rows:
        if row["id"] not in plans:
            continue
        voice_id, voice, _ = plans[row["id"]]
        pieces = audio_by_id[row["id"]]
        if aligner is not None:
            whole = trim_silence(pieces[0])[0]
            words = [w["word"] for w in row["words"]]
            pieces = split_at_holds(whole, words, ipus(row_words(row), row_spans(row)), aligner.words(whole))
            if pieces is None:
                skipped.append((row["id"], "whole-turn render: a hold's neighbouring words were not aligned"))
                continue
        trimmed = [trim_silence(a)[0] for a in pieces]
        if any(t.size == 0 for t in trimmed):
            skipped.append((row["id"], f"{voice.id} produced only silence"))
            continue
        for t in trimmed:  # silences >= 0.1 s the engine put inside an IPU are not in the spans: count them
            gaps["n_ipus"] += 1
            gaps["n_with_internal_gap"] += bool(low_energy_gaps(t, min_gap_s=0.1))
        rec = assemble_turn(row, trimmed, voice_id, source=rendered_name(corpus, cfg), lead_in_s=cfg.lead_in_s,
                            tail_s=cfg.tail_s)
        records.append(rec)
        if rec.split in cfg.condition_splits:
            audio = decode_audio_bytes(rec.audio["bytes"], source=rec.id)
            records += [condition_variant(rec, c, audio, cfg.noise_snr_db, cfg.seed) for c in ("8k", "noisy")]
    return {"records": records, "skipped": skipped, "engine_stats": stats, "internal_gaps": gaps}


_ALIGNER = None


def _aligner():
    """One forced aligner per rendering process (the whisper model loads once)."""
    global _ALIGNER
    if _ALIGNER is None:
        from .align import WhisperAligner

        _ALIGNER = WhisperAligner(n_threads=1)
    return _ALIGNER


def _render_shard(rows: list[dict], cfg: RenderConfig, corpus: str, path: Path) -> dict:
    """Render one shard and write it atomically to `path` (temp file + rename); returns its summary."""
    result = render_rows(rows, cfg, corpus)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return {k: v for k, v in result.items() if k != "records"}


def _select(cfg: RenderConfig, corpus: str) -> dict[str, list[dict]]:
    """Source rows per split: word count within limits, capped by a seeded hash of the id (order-free)."""
    from .dataset import load_turns

    ds = load_turns(cfg.built_root / corpus)
    cols = [c for c in ds.column_names if c != "audio"]
    ds = ds.select_columns(cols)
    meta = ds.select_columns(["id", "split", "n_words"]).to_pandas() if "n_words" in cols else None
    if meta is None or "split" not in cols:
        raise ValueError(f"{cfg.built_root / corpus}: the dataset needs `split` and `n_words` columns")
    present = sorted(set(meta["split"]))
    if not set(cfg.splits) & set(present):
        raise ValueError(f"{cfg.built_root / corpus}: none of the splits {cfg.splits} is present (it has {present})")
    out = {}
    for split in (s for s in cfg.splits if s in present):
        m = meta[(meta["split"] == split) & meta["n_words"].between(cfg.min_words, cfg.max_words)]
        order = [m.index[j] for j in seeded_order(m["id"].tolist(), cfg.seed, "select")]
        cap = _cap(cfg, corpus, split)
        take = sorted(order[:cap] if cap is not None else order, key=lambda i: m.at[i, "id"])
        out[split] = [ds[int(i)] for i in take]
    return out


def _shard_key(cfg: RenderConfig, corpus: str, rows: list[dict]) -> str:
    params = {k: v for k, v in config_to_dict(cfg).items() if k not in ("built_root", "out_root", "workers",
                                                                         "shard_size", "max_turns")}
    payload = json.dumps([params, corpus, [(r["id"], r["words"], r["silence_spans"]) for r in rows]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run(cfg: RenderConfig) -> dict:
    """Render every configured corpus/split; returns {corpus: build_info} (also in each build_info.json)."""
    from tqdm import tqdm

    _paths(cfg)  # validate fields early
    work = cfg.out_root / ".render-work"
    work.mkdir(parents=True, exist_ok=True)
    infos = {}
    for corpus in cfg.corpora:
        t_start = time.perf_counter()
        by_split = _select(cfg, corpus)
        jobs = []
        for split, rows in by_split.items():
            for i in range(0, len(rows), cfg.shard_size):
                chunk = rows[i:i + cfg.shard_size]
                jobs.append((chunk, work / f"{corpus}-{split}-{i // cfg.shard_size:04d}-{_shard_key(cfg, corpus, chunk)}.pkl"))
        todo = [(rows, p) for rows, p in jobs if not p.exists()]
        print(f"{corpus}: {sum(map(len, by_split.values()))} turns in {len(jobs)} shards, "
              f"{len(jobs) - len(todo)} already rendered")
        bar = tqdm(total=len(todo), desc=f"render {corpus}", unit="shard")
        if cfg.workers <= 1 or len(todo) <= 1:
            for rows, p in todo:
                _render_shard(rows, cfg, corpus, p)
                bar.update()
        else:
            with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn")) as pool:
                futs = [pool.submit(_render_shard, rows, cfg, corpus, p) for rows, p in todo]
                for f in as_completed(futs):
                    f.result()
                    bar.update()
        bar.close()
        infos[corpus] = _assemble(cfg, corpus, [p for _, p in jobs], time.perf_counter() - t_start)
    return infos


def _assemble(cfg: RenderConfig, corpus: str, shard_paths: list[Path], wall_s: float) -> dict:
    from .dataset import write_turns

    records, skipped, gaps = [], [], {"n_ipus": 0, "n_with_internal_gap": 0}
    engines: dict[str, dict[str, float]] = {}
    for p in shard_paths:
        with open(p, "rb") as fh:
            res = pickle.load(fh)
        records += res["records"]
        skipped += res["skipped"]
        for k in gaps:
            gaps[k] += res["internal_gaps"][k]
        for e, st in res["engine_stats"].items():
            acc = engines.setdefault(e, {"audio_s": 0.0, "wall_s": 0.0, "n_ipus": 0})
            for k in acc:
                acc[k] += st[k]
    for st in engines.values():
        st["audio_s_per_wall_s"] = st["audio_s"] / st["wall_s"] if st["wall_s"] > 0 else None
    counts: dict[str, int] = {}
    for r in records:
        key = f"{r.split}/{r.audio_condition}"
        counts[key] = counts.get(key, 0) + 1
    voices: dict[str, int] = {}
    for r in records:
        if r.audio_condition == "clean":
            voices[r.voice] = voices.get(r.voice, 0) + 1
    info = {
        "config": config_to_dict(cfg), "corpus": corpus, "counts": counts, "voices": voices,
        "skipped": len(skipped), "skipped_examples": skipped[:20], "engine_speed": engines,
        "tts_internal_gaps_ge_100ms": gaps, "wall_s_this_run": wall_s,
        "rendered_audio_s": sum(r.silence_spans[-1].end for r in records if r.audio_condition == "clean"),
    }
    out = cfg.out_root / rendered_name(corpus, cfg)
    if not records:
        raise ValueError(f"{corpus}: nothing rendered ({len(skipped)} turns skipped, e.g. {skipped[:3]})")
    write_turns(records, out, info=info)
    print(f"{corpus}: wrote {out} {counts}; skipped {len(skipped)}")
    for e, st in sorted(engines.items()):
        print(f"  {e:9s} {st['audio_s']:8.1f} s audio in {st['wall_s']:7.1f} s synthesis "
              f"= {st['audio_s_per_wall_s']:.1f} audio s / wall s ({st['n_ipus']} IPUs)")
    atomic_write_json(cfg.out_root / ".render-work" / f"{rendered_name(corpus, cfg)}-last_build_info.json", info)
    return info
