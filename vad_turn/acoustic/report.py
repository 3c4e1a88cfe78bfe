"""Per-condition operating points of evaluation runs (the acoustic model's evaluation table).

`vad-turn evaluate` on a rendered dataset scores its clean, 8k and noisy rows together and its
slices reuse the policy chosen on the whole set. This recomputes the harness metrics
(`evaluate.compute_metrics`, VAD-only on the same spans) separately for every audio condition of
each run folder's predictions, so each condition gets its own best policy, and prints one table.

    .venv/bin/python -m vad_turn.acoustic.report --runs runs/eval-a runs/eval-b --out runs/acoustic_table.md
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.config import config_from_dict, config_main, config_options, default_built_root
from vad_turn.core.runs import atomic_write_json, atomic_write_text

from .model import DEFAULT_MODEL_DIR
from .train import AcousticTrainConfig, probe_windows

_SWEEP_FIELDS = ("thresholds", "action_delays_s", "timeouts_s", "latency_budgets_s", "false_cutoff_budgets", "grid_s")


@dataclass(frozen=True)
class AcousticReportConfig:
    runs: tuple[Path, ...] = field(default=(), metadata={"help": "evaluation run folders (with predictions.parquet)"})
    out: Path | None = field(default=None, metadata={"help": "write the markdown table here (and .json beside it)"})
    card: Path | None = field(default=None, metadata={"help": "model folder whose README.md model card to (re)write"})
    turn_ids: Path | None = field(default=None, metadata={
        "help": "JSON file {key: [turn ids]} (e.g. a run's split_ids.json): score only those turns of every run"})
    turn_ids_key: str = field(default="eval", metadata={"help": "which list of --turn-ids to keep"})


def _eval_config(run: Path):
    from vad_turn.harness.evaluate import EvalConfig

    raw = json.loads((run / "config.json").read_text())
    kw = {k: (tuple(raw[k]) if isinstance(raw[k], list) else raw[k]) for k in _SWEEP_FIELDS if k in raw}
    return EvalConfig(**kw), raw


def load_turn_ids(path: Path, key: str) -> set[str]:
    """The ids under `key` of a JSON file {key: [ids]}; errors name the file and the keys it has."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no turn id file")
    d = json.loads(path.read_text())
    if not isinstance(d, dict) or key not in d:
        raise ValueError(f"{path}: no list {key!r} (it has {sorted(d) if isinstance(d, dict) else type(d).__name__})")
    return set(map(str, d[key]))


def condition_rows(run: Path, turn_ids: set[str] | None = None) -> list[dict]:
    """One row per audio condition (and 'all' when there are several) of one run folder, scored on
    the turns in `turn_ids` only when given (raises if none of them is in the run)."""
    from vad_turn.harness.evaluate import compute_metrics
    from vad_turn.harness.metrics import roc_auc, same_silence_auc

    run = Path(run)
    path = run / "predictions.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions (is {run} a finished `vad-turn evaluate` run?)")
    preds = pd.read_parquet(path)
    if turn_ids is not None:
        preds = preds[preds["id"].astype(str).isin(turn_ids)].reset_index(drop=True)
        if preds.empty:
            raise ValueError(f"{path}: none of the {len(turn_ids)} requested turn ids is in this run")
    cfg, raw = _eval_config(run)
    conds = sorted(preds["audio_condition"].unique())
    rows = []
    for cond in conds + (["all"] if len(conds) > 1 else []):
        sub = preds if cond == "all" else preds[preds["audio_condition"] == cond]
        m, _ = compute_metrics(sub.reset_index(drop=True), cfg, raw.get("detector", "?"))
        row = {"dataset": Path(raw.get("dataset", "?")).name, "split": raw.get("split"),
               "condition": cond, "detector": raw.get("detector"), "run": run.name, "n_turns": m["counts"]["n_turns"],
               "n_holds": m["counts"]["n_holds_scored"],
               "auc": roc_auc(sub["label"], sub["p_eot"], one_class=None),
               "auc_same_silence": same_silence_auc(sub["p_eot"], sub["silence_dur"], sub["label"])}
        for op in m["operating_points"]:
            key = "fcr" if op["kind"] == "min_fcr_at_latency" else "lat"
            name = op["name"]
            row[name] = op[f"{'false_cutoff_rate' if key == 'fcr' else 'mean_latency_s'}"] if op["reachable"] else None
            vad = op["vad_only"]
            row[f"{name} vad"] = vad["false_cutoff_rate" if key == "fcr" else "mean_latency_s"] if vad["reachable"] else None
            ratio = op.get("ratio_to_vad_only")
            row[f"{name} ratio"] = ratio if isinstance(ratio, (int, float)) and np.isfinite(ratio) else None
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown: per dataset/condition, each operating point as detector / VAD-only (ratio)."""
    ops = ["fcr@lat<=0.3s", "fcr@lat<=0.6s", "lat@fcr<=5%", "lat@fcr<=10%"]

    def cell(r, op):
        d, v, q = r.get(op), r.get(f"{op} vad"), r.get(f"{op} ratio")
        f = (lambda x: f"{x:.3f}") if op.startswith("fcr") else (lambda x: f"{x:.2f}s")
        if d is None and v is None:
            return "unreachable"
        return f"{'-' if d is None else f(d)} / {'-' if v is None else f(v)}" + ("" if q is None else f" ({q:.2f}x)")

    head = "| dataset | split | condition | detector | run | turns | holds | AUC | AUC same silence | " + " | ".join(ops) + " |"
    lines = [head, "|" + "---|" * (9 + len(ops))]
    for r in rows:
        auc = "-" if r["auc"] is None else f"{r['auc']:.3f}"
        same = r.get("auc_same_silence")
        same = "-" if same is None or not np.isfinite(same) else f"{same:.3f}"
        lines.append(f"| {r['dataset']} | {r['split']} | {r['condition']} | {r.get('detector')} | {r.get('run', '-')} | {r['n_turns']} | {r['n_holds']} | {auc} | {same} | "
                     + " | ".join(cell(r, op) for op in ops) + " |")
    return "\n".join(lines) + ("\n\nCells: detector / VAD-only on the same spans (ratio detector / VAD-only). AUC same "
                               "silence: end vs hold queries at equal silence so far (<= 1 s), averaged.\n")


def run(cfg: AcousticReportConfig) -> list[dict]:
    if not cfg.runs:
        raise ValueError("give at least one evaluation run folder with --runs")
    ids = None if cfg.turn_ids is None else load_turn_ids(cfg.turn_ids, cfg.turn_ids_key)
    rows = [r for run_dir in cfg.runs for r in condition_rows(run_dir, ids)]
    table = format_table(rows)
    print(table)
    if cfg.out is not None:
        atomic_write_text(Path(cfg.out), table)
        atomic_write_json(Path(cfg.out).with_suffix(".json"), {"runs": [str(r) for r in cfg.runs], "rows": rows})
    if cfg.card is not None:
        write_model_card(Path(cfg.card), table, [str(r) for r in cfg.runs])
    return rows


def render_commands(train_config: dict) -> list[str]:
    """The `vad-turn render` calls that made the rendered training sets (from their build_info.json)."""
    out = []
    for spec in train_config.get("train_sets", []):
        name = spec.split(":")[0]
        info = Path(train_config.get("built_root", ".")) / name / "build_info.json"
        if name.endswith("-rendered") and info.exists():
            rc = json.loads(info.read_text()).get("config", {})
            out.append(f"vad-turn render --corpora {' '.join(rc.get('corpora', []))} "
                       f"--max-turns {' '.join(rc.get('max_turns', []))}")
    return out


def rebuild_command(train_config: dict, folder: Path) -> str:
    """`vad-turn train-acoustic` with the options of `train_config` (config.json's, nested or in the flat form
    written before the model config was nested) that differ from the defaults (`config.config_options`)."""
    cfg = config_from_dict(AcousticTrainConfig, train_config, ignore_unknown=True)
    args = config_options(cfg, AcousticTrainConfig(), skip=("out", "model_out", "built_root", "teacher_cache_dir"))
    return " ".join(["vad-turn train-acoustic", *args, f"--model-out {folder}"])


def model_section(folder: Path, cfg: dict) -> list[str]:
    """The card's "## Model" section (architecture, sizes, fp32 / int8 export checks) from config.json."""
    summ = cfg.get("summary", {})
    exp, q = summ.get("export", {}), summ.get("export", {}).get("int8", {})
    sizes = {n: (folder / n).stat().st_size for n in ("model.pt", "model.onnx", "model.int8.onnx") if (folder / n).exists()}
    lines = ["## Model", "", f"- architecture: `{json.dumps(cfg['model'])}`",
             f"- parameters: {summ.get('n_parameters')}; files: " + ", ".join(f"{n} {b / 2**20:.2f} MB" for n, b in sizes.items()),
             f"- ONNX fp32 parity (max |p_onnx - p_torch| on {64} real dev windows): {exp.get('fp32', {}).get('max_abs_diff')}",
             f"- int8 (dynamic, per-channel, ops {q.get('quantized_ops')}, reduce_range {q.get('reduce_range', False)}): "
             f"max diff {q.get('max_abs_diff')}, decision agreement {q.get('decision_agreement')}"]
    if q.get("cpu"):
        probe = q.get("probe", {})
        lines.append(f"- int8 exported and checked on: {q['cpu'].get('model')} (int8 dot products: "
                     f"{q['cpu'].get('int8_dot')}, flags {q['cpu'].get('flags')}); parity probe `{Path(probe.get('path', '')).name}` "
                     f"({probe.get('n')} windows, tol {probe.get('tol')}): inference uses the int8 graph only on a CPU "
                     "where it holds, else fp32 with a warning (`vad_turn/core/onnx.py`)")
    return lines + [""]


def rewrite_model_section(folder: Path) -> Path:
    """Replace the "## Model" section of `folder/README.md` (up to the next "## ") from config.json."""
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    text = (folder / "README.md").read_text()
    start = text.index("## Model\n")
    end = text.find("\n## ", start + 1)
    new = "\n".join(model_section(folder, cfg)) + "\n"
    atomic_write_text(folder / "README.md", text[:start] + new + (text[end + 1:] if end >= 0 else ""))
    return folder / "README.md"


def write_model_card(folder: Path, eval_table: str | None = None, eval_runs: list[str] | None = None) -> Path:
    """(Re)write `folder/README.md` from its config.json (architecture, training summary, export checks)."""
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    summ, tc = cfg.get("summary", {}), cfg.get("train_config", {})
    best = summ.get("best", {})
    lines = [
        "# Acoustic end-of-turn model (stub card; the fused model's card supersedes it)", "",
        "Last `window_s` of 16 kHz audio (log-mel + causal F0 / voicing / intensity, `vad_turn/acoustic/features.py`) and the",
        "silence so far -> p_eot, `vad_turn/acoustic/model.py`. Detector: `vad-turn evaluate --detector acoustic`.", "",
        *model_section(folder, cfg),
        "## Training", "",
        f"- data: {tc.get('train_sets')} ({summ.get('n_train_examples')} examples, {tc.get('points_per_span')} grid "
        f"points per span, real-audio turns x{tc.get('real_repeat')}, augmentation clean/8k/noisy/8k+noisy "
        f"{tc.get('aug_probs')}, SNR {tc.get('snr_db_range')} dB, gain {tc.get('gain_db_range')} dB)",
        f"- selection: {tc.get('select_metric')} ({tc.get('select_mode')}) on {tc.get('val_set')} "
        f"({summ.get('n_val_examples')} grid queries); selected epoch {summ.get('best_epoch')} of {tc.get('epochs')}",
        f"- wall time: features {summ.get('feature_wall_s')} s + training {summ.get('train_wall_s')} s on the 2-core CPU",
        f"- split ids: `split_ids.json` (run folder {summ.get('run')})", "",
        "## Validation (selected epoch)", "", "| metric | value |", "|---|---|",
        *[f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in best.items()], "",
    ]
    if eval_table:
        lines += ["## Evaluation (harness, per audio condition)", "", f"Runs: {', '.join(eval_runs or [])}", "",
                  f"The validation set ({tc.get('val_set')}) also selected the epoch, so its rows are not held out;",
                  "the 8k / noisy rows of a rendered split are the same turns through another channel.", "",
                  eval_table, ""]
    lines += ["## Limitations", "",
              "Trained and selected on TTS renderings of real Switchboard turns: each inter-pausal unit is synthesized",
              "on its own, so TTS gives it sentence-final prosody whether the real speaker held or yielded the floor.",
              "Acoustic cues learnt here are mostly those of the words themselves and of the TTS voices, not human",
              "turn-yielding prosody; the 32 real AMI training turns are too few to change that.", "",
              "## Rebuild", "", "```", *render_commands(tc), rebuild_command(tc, folder),
              "```", ""]
    atomic_write_text(folder / "README.md", "\n".join(lines))
    return folder / "README.md"


def main(argv: list[str] | None = None) -> int:
    return config_main(AcousticReportConfig, run, argv, __doc__.splitlines()[0], prog="python -m vad_turn.acoustic.report")


if __name__ == "__main__":
    raise SystemExit(main())


@dataclass(frozen=True)
class ExportAcousticConfig:
    """Re-export a saved acoustic model folder's ONNX graphs (fp32 + int8 + the int8 parity probe) from
    its model.pt, on the probe windows its training run used (`probe_windows` of its train_config)."""

    model_dir: Path = field(default=DEFAULT_MODEL_DIR, metadata={"help": "acoustic model folder (model.pt, config.json)"})
    built_root: Path = field(default_factory=default_built_root, metadata={"help": "folder of the built datasets"})
    n_probe: int = field(default=64, metadata={"help": "real validation windows for the parity checks"})

    def __post_init__(self) -> None:
        if self.n_probe < 8:
            raise ValueError(f"n_probe must be >= 8, got {self.n_probe}")



def export_run(cfg: ExportAcousticConfig) -> dict:
    """Export and check fp32 + int8 ONNX (`save_trained`'s export step) for an existing model folder;
    records the checks in its config.json (summary.export) and the model section of its README.md."""
    import json

    from .export import export_onnx, quantize_int8
    from .model import load_model
    from .report import rewrite_model_section

    folder = Path(cfg.model_dir)
    card = json.loads((folder / "config.json").read_text())
    tc = config_from_dict(AcousticTrainConfig, card["train_config"], ignore_unknown=True)
    train_cfg = dataclasses.replace(tc, built_root=Path(cfg.built_root), out=Path(tc.out or "runs/x"), model_out=None)
    net = load_model(folder)
    probe = probe_windows(train_cfg, n=cfg.n_probe)
    checks = {"fp32": export_onnx(net, folder / "model.onnx", *probe)}
    checks["int8"] = quantize_int8(folder / "model.onnx", folder / "model.int8.onnx", net, *probe)
    rel = {k: {**v, "path": str(Path(v["path"]).relative_to(folder.resolve()) if Path(v["path"]).is_absolute()
                                 else Path(v["path"]).name)} for k, v in checks.items()}
    rel["int8"]["probe"] = {**rel["int8"]["probe"], "path": Path(rel["int8"]["probe"]["path"]).name}
    card.setdefault("summary", {})["export"] = rel
    atomic_write_json(folder / "config.json", card)
    from vad_turn.core.model_files import recorded_checksums, write_checksums

    recorded = recorded_checksums(folder)
    if recorded:  # the fused model verifies these files by sha256: record the new ones
        write_checksums(folder, sorted(recorded))
    if (folder / "README.md").exists():
        rewrite_model_section(folder)
    print(json.dumps(rel, indent=1))
    return rel
