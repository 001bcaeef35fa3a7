# Two commands for a newcomer: `make play` (once the viewer lands) and `make test`. Both set up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HEADLESS := MUJOCO_GL=$${MUJOCO_GL:-egl} SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy

.PHONY: setup test lint gl

setup: $(VENV)/.installed gl

# Reinstall only when the project's requirements change.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# MuJoCo's offscreen renderer needs EGL (or OSMesa); install Debian's packages when missing and root.
gl: $(VENV)/.installed
	@MUJOCO_GL=$${MUJOCO_GL:-egl} bash .ci/ensure-gl $(BIN)/python

test: setup
	$(HEADLESS) $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
