# Two commands for a newcomer: `make play` and `make test`. Both set up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HEADLESS := MUJOCO_GL=$${MUJOCO_GL:-egl} SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy

.PHONY: setup test play lint gl

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

# The window on the shipped balls checkpoint (Tab cycles the worlds); the true simulator where
# no checkpoint is shipped yet. Without a display it says how to run headless.
play: setup
	$(BIN)/worldmodel play --world balls

# Two workers: most of a test's time is XLA compiling, which runs on one core.
JOBS ?= 2
test: setup
	$(HEADLESS) $(BIN)/python -m pytest -n $(JOBS) --dist worksteal

lint: setup
	$(BIN)/ruff check .
