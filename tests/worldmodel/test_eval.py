"""`worldmodel eval` on a barely trained model: the report has the documented shape and files, and
data of another world is refused clearly. (Whether a model learns is test_learning.py.)"""

import json
import subprocess
import sys

import pytest

from worldmodel.checkpoint import load_run
from worldmodel.eval import BASELINES, KEYS, EvalConfig, evaluate
from worldmodel.record import RecordConfig, record


@pytest.fixture(scope="module")
def run(micro_run):
    return micro_run


@pytest.mark.parametrize("form", ["run", "exported"])
def test_eval_writes_the_report_with_the_documented_shape(run, form, tmp_path):
    """On a training run, and on the exported form that `checkpoints/` ships."""
    ckpt = run / "run"
    if form == "exported":
        from worldmodel.checkpoint import export

        ckpt = tmp_path / "exported"
        export(run / "run", ckpt)
    out = tmp_path / "report"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldmodel.cli",
            "eval",
            "--ckpt",
            str(ckpt),
            "--data",
            str(run / "held"),
            "--train-data",
            str(run / "train"),
            "--out",
            str(out),
            "--context",
            "4",
            "--horizon",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "frame_psnr" in result.stdout and "copy_last" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"horizons", "latent_dim", "effective_rank", "probe_r2", "model", "baselines"} <= set(
        metrics
    )
    assert metrics["horizons"] == list(range(1, 9))
    assert metrics["latent_dim"] == load_run(run / "run").cfg.z_dim
    assert set(metrics["model"]) == set(KEYS) and set(metrics["baselines"]) == set(BASELINES)
    for who in metrics["baselines"].values():
        assert set(who) == set(KEYS)
    assert all(len(v) == 8 for v in metrics["model"].values())
    for name in ("frames.png", "metrics.png", "audio_true.wav", "audio_pred.wav", "captions.txt"):
        assert (out / name).stat().st_size > 0, name
    assert "pred:" in (out / "captions.txt").read_text()


def test_a_dataset_of_another_world_is_refused_clearly(run, tmp_path):
    record(
        RecordConfig(world="reacher", episodes=1, steps=20, seed=0), tmp_path / "r", progress=False
    )
    with pytest.raises(ValueError, match="vocabulary differs"):
        evaluate(
            load_run(run / "run"),
            tmp_path / "r",
            tmp_path / "rep",
            EvalConfig(context=4, horizon=8),
            train_data=str(run / "train"),
        )


def test_the_state_probe_is_not_thrown_by_drift_in_a_dead_latent_cell():
    """A latent cell that barely moves on real data (background) must not dominate the read-out
    when an imagined latent drifts there a little."""
    import numpy as np

    from worldmodel.eval import Probe

    rng = np.random.default_rng(0)
    state = rng.normal(size=(2000, 2))
    live = state @ rng.normal(size=(2, 6)) + 0.5 * rng.normal(size=(2000, 6))
    dead = 1e-4 * (state @ rng.normal(size=(2, 4)) + 0.5 * rng.normal(size=(2000, 4)))
    z = np.concatenate([live, dead], 1)
    probe = Probe(z, state)
    assert probe.r2(probe.predict(z), state) > 0.9
    drifted = z.copy()
    drifted[:, 6:] += 0.05  # small next to the live cells' spread of about 1
    assert probe.r2(probe.predict(drifted), state) > 0.9


def test_the_probe_does_not_lean_on_quiet_directions_that_imagination_drifts_in():
    """A quiet copy of the state (exact, but a twentieth of the spread) would let a barely
    regularised probe read the state perfectly from it, and a small drift there (as an imagined
    latent has) would then wreck the read-out; the default ridge reads the loud, noisy copy."""
    import numpy as np

    from worldmodel.eval import EvalConfig, Probe

    rng = np.random.default_rng(0)
    state = rng.normal(size=(4000, 2))
    loud = state @ rng.normal(size=(2, 6)) + 0.3 * rng.normal(size=(4000, 6))
    quiet = 0.05 * state @ rng.normal(size=(2, 4))
    z = np.concatenate([loud, quiet], 1)
    drifted = z + np.r_[np.zeros(6), 0.05 * np.ones(4)]
    lax, default = Probe(z, state, 1e-6), Probe(z, state, EvalConfig().probe_ridge)
    assert lax.r2(lax.predict(z), state) > 0.99
    assert lax.r2(lax.predict(drifted), state) < 0.5
    assert default.r2(default.predict(z), state) > 0.8
    assert default.r2(default.predict(drifted), state) > 0.8
