"""Headless everywhere: offscreen MuJoCo, dummy SDL video and audio."""

import os
import shutil
import tempfile

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# One XLA compilation cache for the session and the training subprocesses it starts: tests that
# train the same micro model again (resume, one device against several) load its compiled steps
# instead of compiling them again (20 s each on a 2-core CPU). Fresh per session unless set.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="worldmodel-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache


def pytest_collection_modifyitems(config, items):
    """Tests marked `heavy` (minutes each) run first, so that with two workers (`make test`) the
    long ones overlap instead of one finishing alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


def pytest_unconfigure(config):
    if "_cache" in globals():
        shutil.rmtree(_cache, ignore_errors=True)


# The smallest backbone, stem and decoder the fixtures below build models with.
MICRO = dict(width=32, depth=1, heads=2, stem=(8, 16, 16), decoder_channels=(16, 8, 8))


@pytest.fixture(scope="session")
def micro_model():
    """The smallest model config the imagined-env and RL tests build fresh models from."""
    from worldmodel.config import preset

    m, _ = preset("tiny", **MICRO, latent_dim=16, hidden_dim=16)
    return m


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory):
    """A barely trained balls model (2 steps of a micro config) with its train and held-out data:
    enough to drive every code path of eval and the window. Returns the folder holding train/,
    held/ and run/."""
    from worldmodel.config import preset
    from worldmodel.record import RecordConfig, record
    from worldmodel.train import train

    root = tmp_path_factory.mktemp("micro")
    record(
        RecordConfig(world="balls", episodes=2, steps=16, seed=0), root / "train", progress=False
    )
    record(RecordConfig(world="balls", episodes=2, steps=16, seed=1), root / "held", progress=False)
    m, t = preset(
        "tiny",
        **MICRO,
        latent_dim=32,
        hidden_dim=32,
        batch=2,
        context=2,
        horizon=3,
        steps=2,
        stages=(0.0, 0.0),
    )
    train(root / "train", root / "run", m, t, progress=False)
    return root
