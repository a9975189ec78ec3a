# Two commands on a fresh machine:
#   make demo   run the box on this laptop (keyboard buttons, real voice, speaker or a WAV file)
#   make test   run the whole test suite
#   make vm-test  build the Debian-based SD image (cached) and test it booted in QEMU (long; root)
# Each creates .venv and installs what it needs; nothing else has to be set up by hand.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench clean system-deps vm-test

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
	$(BIN)/python -m pytest -n auto --dist loadfile

# The booted box: tools/install-vm-deps.sh (qemu, mmdebstrap: never in CI), a signing key for
# the test bundles, the image (its root file system and venv are cached in ~/.cache/circlebox-image),
# then the `vm` tests. The image is rebuilt every run (a few minutes once cached).
VM_DIR := build/vm
vm-test: $(VENV)/.installed-dev
	./tools/install-vm-deps.sh
	mkdir -p $(VM_DIR)/keys
	test -f $(VM_DIR)/keys/vm-test.pub || $(BIN)/circlebox bundle keygen --out $(VM_DIR)/keys --name vm-test
	./image_build.sh --image $(VM_DIR)/circlebox-vm.img --base debian --build usb \
		--pubkey $(VM_DIR)/keys/vm-test.pub
	CIRCLEBOX_VM_IMAGE=$(VM_DIR)/circlebox-vm.img $(BIN)/python -m pytest -m vm tests/vm -v

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
