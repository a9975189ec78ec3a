# Two commands on a fresh machine:
#   make demo   run the box on this laptop (keyboard buttons, real voice, speaker or a WAV file)
#   make test   run the whole test suite
# Each creates .venv and installs what it needs; nothing else has to be set up by hand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[tts,listen,admin]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-demo

system-deps:
	./tools/install-system-deps.sh

demo: $(VENV)/.installed-demo
	$(BIN)/circlebox demo

test: system-deps $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
