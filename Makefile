# Finds a Python 3.10 (python3.10 if it runs, else the newest 3.10.x that pyenv holds), builds
# .venv with it, and runs the tests or the main job. The training jobs install requirements.txt
# alone; the tests (and benchmark/run.py, aggregate.py) also need requirements-benchmark.txt.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

PYTHON310 := $(shell \
	if python3.10 -c 'import sys' >/dev/null 2>&1; then command -v python3.10; \
	elif command -v pyenv >/dev/null 2>&1; then \
	  v=$$(ls "$$(pyenv root)/versions" 2>/dev/null | grep -E '^3\.10\.[0-9]+$$' | sort -t. -k3 -n | tail -n 1); \
	  [ -n "$$v" ] && [ -x "$$(pyenv root)/versions/$$v/bin/python3.10" ] && echo "$$(pyenv root)/versions/$$v/bin/python3.10"; \
	fi)

.PHONY: venv venv-benchmark test strpo train-unsafe clean-venv

$(VENV)/.installed: requirements.txt
	@if [ ! -x "$(PY)" ]; then \
	  if [ -z "$(PYTHON310)" ]; then echo "error: Python 3.10 not found; install it (pyenv install 3.10 or conda create -n strpo python=3.10) and re-run make"; exit 1; fi; \
	  "$(PYTHON310)" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

# both files in one pip call, so that Ray and rliable resolve beside the training pins
$(VENV)/.installed-benchmark: $(VENV)/.installed requirements-benchmark.txt
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-benchmark.txt
	@touch $@

venv: $(VENV)/.installed

venv-benchmark: $(VENV)/.installed-benchmark

test: venv-benchmark
	$(PY) -m pytest -q tests

# The main job: sTRPO on SafetyCarCircle1-v0 with the shipped pi_unsafe (1M steps; ARGS adds flags).
strpo: venv
	$(PY) strpo.py --env-id SafetyCarCircle1-v0 $(ARGS)

# Trains a pi_unsafe on SafetyCarCircle1-v0 (the shipped one's command, unsafe_policies/README.md; ARGS adds flags).
train-unsafe: venv
	$(PY) unsafe_cvar_trpo.py --env-id SafetyCarCircle1-v0 --total-timesteps 300000 --seed 0 $(ARGS)

clean-venv:
	rm -rf $(VENV)
