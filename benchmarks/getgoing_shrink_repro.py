"""Reproduce issue 28 #3 on a scratch data root: a truncated recording must never silently shrink a good build.

    python benchmarks/getgoing_shrink_repro.py                      # in a temporary folder, removed after
    python benchmarks/getgoing_shrink_repro.py --work-dir /tmp/gg   # keep the scratch root and builds

It links one real GetGoing call of the shared data root (read in place, never copied) into a scratch root,
builds it (`vad-turn build-getgoing`), cuts the last fifth of the call's user.ogg in the scratch root only,
adds an empty call folder, and rebuilds: as is, with --force, and with --allow-shrink, printing each exit
status. Expected: 0, then 2 and 2 (the call named: "call <uuid>: 6 -> k turns (user.ogg changed: sha256
... -> ...; user.ogg ends inside an Ogg page ...)", the empty folder named and skipped, the build kept), then
0 (replaced, the line kept in build_info.json). Before issue 28 the rebuild said "up to date" (exit 0) and
--force replaced the build with the smaller one (exit 0), naming nothing. Takes ~30 s (one call's VAD + ASR,
twice). The same steps are asserted in tests/test_getgoing_inputs.py.
"""
from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.config import REPO_ROOT, config_main, default_data_root

sys.path.insert(0, str(REPO_ROOT / "tests"))  # the scratch-root helpers the tests use
from fixtures.corpora.make_root import make_getgoing_root, replace_getgoing_file  # noqa: E402


@dataclass(frozen=True)
class ShrinkReproConfig:
    work_dir: Path | None = field(default=None, metadata={"help": "scratch folder ('none': a temporary one, removed)"})
    data_root: Path = field(default_factory=default_data_root, metadata={"help": "the shared data root (read only)"})
    call: str = field(default="2df66a93f3ec5a856e9f3ce0b9dc8b30", metadata={"help": "the call to truncate (dev split)"})
    keep_fraction: float = field(default=0.8, metadata={"help": "share of user.ogg's bytes kept"})

    def __post_init__(self) -> None:
        if not 0.0 < self.keep_fraction < 1.0:
            raise ValueError(f"--keep-fraction must be in (0, 1), got {self.keep_fraction}")


def repro(cfg: ShrinkReproConfig, work: Path) -> int:
    from vad_turn.cli import main
    from vad_turn.data.corpora import load_recipe
    from vad_turn.data.dataset import build_info, load_turns

    folder = load_recipe("getgoing")["folder"]
    data, recipes = make_getgoing_root(work / "root", cfg.data_root, {cfg.call: "dev"})
    out_dir = work / "built" / "getgoing"
    argv = ["build-getgoing", "--data-root", str(data), "--recipes-dir", str(recipes), "--out-root",
            str(work / "built"), "--cache-dir", str(work / "cache"), "--splits", "dev", "--n-check-turns", "2"]

    def step(name: str, extra: list[str]) -> int:
        print(f"\n=== {name}: vad-turn {' '.join(argv[:1] + extra)}", flush=True)
        code = main(argv + extra)
        print(f"=== exit status {code}; the build holds {len(load_turns(out_dir))} turns", flush=True)
        return code

    codes = [step("good build", [])]
    whole = (cfg.data_root / folder / cfg.call / "user.ogg").read_bytes()
    cut = replace_getgoing_file(data, cfg.call, "user.ogg", whole[: int(len(whole) * cfg.keep_fraction)])
    (data / folder / "0000-empty").mkdir()
    print(f"\ntruncated {cut} to {cut.stat().st_size} of {len(whole)} bytes; added an empty call folder")
    codes += [step("rebuild", []), step("forced rebuild", ["--force"]), step("allowed shrink", ["--allow-shrink"])]
    print(f"\nexit statuses {codes} (expected [0, 2, 2, 0]); build_info notes.calls_lost_turns: "
          f"{build_info(out_dir)['notes'].get('calls_lost_turns')}")
    return 0 if codes == [0, 2, 2, 0] else 1


def run(cfg: ShrinkReproConfig) -> int:
    if cfg.work_dir is not None:
        Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
        return repro(cfg, Path(cfg.work_dir))
    with tempfile.TemporaryDirectory(prefix="getgoing-shrink-") as tmp:
        return repro(cfg, Path(tmp))


def main(argv: list[str] | None = None) -> int:
    return config_main(ShrinkReproConfig, run, argv, __doc__.splitlines()[0], prog="python benchmarks/getgoing_shrink_repro.py")


if __name__ == "__main__":
    sys.exit(main())
