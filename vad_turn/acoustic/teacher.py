"""A teacher detector's p_eot on training queries, cached on disk, as a soft target for the acoustic student.

Distillation (issue 14, part 4): the student learns from `(1 - teacher_weight) * label + teacher_weight *
p_teacher`, where the teacher is any registered harness detector (e.g. Smart Turn v3.2, BSD-2-Clause, whose
licence allows training on its outputs; `vad_turn.harness.detectors.make_detector`). The teacher sees the
query's audio as evaluation gives it (no augmentation); the student sees the augmented window.

A teacher costs ~50 ms per query on this CPU, so its answers are cached per (teacher, source) in one .npz
(`keys`: "turn_id|span_index|timestamp_ms", `p_eot`), written atomically after every chunk of queries:
an interrupted run keeps what it computed, and a rerun on the same queries costs nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vad_turn.core.runs import atomic_path


def query_keys(table) -> list[str]:
    """One key per example row of a `build_examples` table: "turn_id|span_index|timestamp_ms"."""
    return [f"{t}|{int(s)}|{round(1000 * ts)}" for t, s, ts in
            zip(table["turn_id"], table["span_index"], table["timestamp"])]


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)


class TeacherCache:
    """p_eot of one teacher detector on the queries of one source, read from and added to a cache file.

    cache_dir / f"{teacher}__{source}.npz" (characters other than letters, digits and "._-" become "-").
    `threads` go to the teacher's factory when it takes them (Smart Turn does)."""

    def __init__(self, teacher: str, source: str, cache_dir: Path, threads: int = 1):
        self.teacher, self.source, self.threads = teacher, source, threads
        self.path = Path(cache_dir) / f"{_file_safe(teacher)}__{_file_safe(source)}.npz"
        self._p: dict[str, float] = {}
        if self.path.exists():
            with np.load(self.path, allow_pickle=False) as z:
                self._p = dict(zip(z["keys"].tolist(), z["p_eot"].tolist()))
        self._det = None
        self.n_computed = 0

    def __len__(self) -> int:
        return len(self._p)

    def _detector(self):
        if self._det is None:
            from vad_turn.harness.detectors import make_detector

            try:
                self._det = make_detector(self.teacher, threads=self.threads)
            except TypeError:  # a factory without a threads option
                self._det = make_detector(self.teacher)
            if not self._det.needs_audio:
                raise ValueError(f"teacher {self.teacher!r} does not read audio: it cannot teach the acoustic model")
        return self._det

    def p_eot(self, table, queries) -> np.ndarray:
        """(n,) teacher p_eot of the rows of `table` (its `queries`, audio included), computing the missing ones."""
        keys = query_keys(table)
        todo = [i for i, k in enumerate(keys) if k not in self._p]
        if todo:
            det = self._detector()
            qs = [queries[i] for i in todo]
            p = det.predict_batch(qs) if hasattr(det, "predict_batch") else \
                np.array([det.predict(q.audio, q.words, q.messages, q.silence_s) for q in qs])
            if len(p) != len(todo) or not np.all(np.isfinite(p)):
                raise ValueError(f"teacher {self.teacher!r} returned {len(p)} values for {len(todo)} queries "
                                 "(or non-finite ones)")
            self._p.update(zip((keys[i] for i in todo), np.asarray(p, np.float64).tolist()))
            self.n_computed += len(todo)
            self.save()
        return np.array([self._p[k] for k in keys], dtype=np.float64)

    def add_from_run(self, run_dir: Path) -> int:
        """Add the answers of a finished `vad-turn evaluate` run of this teacher (its predictions.parquet: every
        grid point, the query audio as evaluation gives it, the same keys) to the cache and save it; returns how
        many were new. A teacher that reads only audio answers a query the same in a run and in training, so its
        scores of a whole corpus (e.g. Smart Turn on every GetGoing turn) serve every fold's training queries.
        Raises ValueError when the run is not of this teacher."""
        import json

        import pandas as pd

        run_dir = Path(run_dir)
        for name in ("config.json", "predictions.parquet"):
            if not (run_dir / name).is_file():
                raise ValueError(f"{run_dir}: no {name} (not a finished `vad-turn evaluate` run)")
        detector = json.loads((run_dir / "config.json").read_text()).get("detector")
        if detector != self.teacher:
            raise ValueError(f"{run_dir}: a run of {detector!r}, not of the teacher {self.teacher!r}")
        pr = pd.read_parquet(run_dir / "predictions.parquet", columns=["id", "span_index", "timestamp", "p_eot"])
        keys = query_keys(pr.rename(columns={"id": "turn_id"}))
        before = len(self._p)
        self._p.update(zip(keys, pr["p_eot"].to_numpy(dtype=np.float64).tolist()))
        self.save()
        return len(self._p) - before

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path, suffix=".npz") as tmp:
            np.savez(tmp, keys=np.array(list(self._p), dtype=str), p_eot=np.array(list(self._p.values())))


def soft_target(label: np.ndarray, p_teacher: np.ndarray | None, teacher_weight: float) -> np.ndarray:
    """(n,) training target in [0, 1]: the label, mixed with the teacher's p_eot when there is one."""
    label = np.asarray(label, np.float64)
    if p_teacher is None or teacher_weight == 0:
        return label
    return (1.0 - teacher_weight) * label + teacher_weight * np.clip(p_teacher, 0.0, 1.0)
