"""PPO in the imagined environment: plumbing on an untrained tiny reacher model (shapes, finite
values, determinism, the evaluation's keys) and, given the shipped reacher checkpoint, a quick run
whose policy must beat random actions in the true simulator."""

import dataclasses
import json
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sims
from worldmodel.audio import SAMPLE_RATE
from worldmodel.checkpoint import fresh, load, save
from worldmodel.cli import main
from worldmodel.envs import collect, make_params
from worldmodel.rl import (
    PPOConfig,
    Transition,
    act,
    evaluate_in_world,
    evaluate_random,
    gae,
    ppo,
    train_in_imagination,
)

QUICK = PPOConfig(num_envs=8, rollout=4, iterations=2, epochs=2, minibatches=2, max_steps=3)
CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "reacher"


@pytest.fixture(scope="module")
def imagined(micro_model):
    """A fresh tiny reacher model at 32x32 with env params from a few real episodes."""
    world = sims.make("reacher", size=32)
    loaded = fresh(world.describe(), micro_model)
    collected = collect(loaded, world, episodes=3, steps=4)
    world.close()
    # A threshold no probability exceeds: the untrained done head does not end episodes.
    params = make_params(loaded, collected, max_steps=3, done_threshold=1.0)
    return loaded, params


@pytest.fixture(scope="module")
def trained(imagined):
    loaded, params = imagined
    return train_in_imagination(loaded, QUICK, params)


def test_ppo_runs_and_returns_a_finite_policy_and_history(imagined, trained):
    loaded, _ = imagined
    policy, history = trained
    D, A = loaded.cfg.z_dim, loaded.cfg.action_dim
    assert len(history) == QUICK.iterations
    for row in history:
        assert {"reward", "policy_loss", "value_loss", "entropy", "kl"} <= set(row)
        assert all(np.isfinite(v) for v in row.values()), row
    # Truncation after 3 steps: 8 envs x 4 steps end at least 8 episodes per iteration.
    assert history[0]["episodes_ended"] >= QUICK.num_envs
    net, norm = policy["net"], policy["norm"]
    assert net["actor"][0]["w"].shape == (D, QUICK.hidden[0])
    assert net["actor"][-1]["w"].shape == (QUICK.hidden[-1], A)
    assert net["critic"][-1]["w"].shape == (QUICK.hidden[-1], 1)
    assert net["log_std"].shape == (A,)
    assert norm["mean"].shape == (D,) and (np.asarray(norm["std"]) > 0).all()
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(policy))


def test_ppo_is_deterministic_for_a_seed(imagined, trained):
    loaded, params = imagined
    policy, history = trained
    again, history_again = train_in_imagination(loaded, QUICK, params)
    assert history_again == history
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(policy), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gae_bootstraps_truncation_but_not_termination():
    # One env, two steps: the first truncates (bootstrap from the final latent's value), the
    # second terminates (no bootstrap); no advantage flows across either boundary.
    f = np.float32
    traj = Transition(
        obs=np.zeros((2, 1, 1), f),
        action=np.zeros((2, 1, 1), f),
        logp=np.zeros((2, 1), f),
        value=np.array([[1.0], [2.0]], f),
        reward=np.array([[0.5], [0.25]], f),
        done=np.array([[True], [True]]),
        terminated=np.array([[False], [True]]),
        final_value=np.array([[3.0], [4.0]], f),
    )
    adv, target = gae(traj, gamma=0.9, lam=0.8)
    np.testing.assert_allclose(adv[:, 0], [0.5 + 0.9 * 3.0 - 1.0, 0.25 - 2.0], rtol=1e-6)
    np.testing.assert_allclose(target, adv + traj.value, rtol=1e-6)


def test_the_minibatches_must_divide_the_batch():
    with pytest.raises(ValueError, match="minibatches=3"):
        PPOConfig(num_envs=8, rollout=4, minibatches=3)


def test_evaluations_in_the_true_simulator_report_returns_and_distances(imagined, trained):
    loaded, _ = imagined
    policy, _ = trained
    keys = {"mean_return", "returns", "final_distance", "final_distances"}
    out = evaluate_in_world(loaded, policy, "reacher", episodes=2, steps=3, seed=5)
    assert set(out) == keys
    assert len(out["returns"]) == 2 and len(out["final_distances"]) == 2
    assert out["mean_return"] == pytest.approx(np.mean(out["returns"]))
    # Reacher's reward is minus the distance: three steps of it are negative and bounded.
    assert all(-3 * 0.6 < r < 0 for r in out["returns"])
    assert out == evaluate_in_world(loaded, policy, "reacher", episodes=2, steps=3, seed=5)
    rand = evaluate_random("reacher", episodes=2, steps=3, seed=5, size=32)
    assert set(rand) == keys and len(rand["returns"]) == 2
    assert all(-3 * 0.6 < r < 0 for r in rand["returns"])
    with pytest.raises(ValueError, match="not 'balls'"):
        evaluate_in_world(loaded, policy, "balls", episodes=1, steps=1)


class Point(NamedTuple):
    pos: jax.Array  # float[2]
    target: jax.Array  # float[2]
    t: jax.Array  # int32[]


def _point_reset(key: jax.Array, max_steps: int):
    pos, target = jax.random.uniform(key, (2, 2), minval=-1.0, maxval=1.0)
    return jnp.concatenate([pos, target]), Point(pos, target, jnp.zeros((), jnp.int32))


def _point_step(key: jax.Array, s: Point, action: jax.Array, max_steps: int):
    """A point mass that moves 0.1 per step toward where it is pushed; reward: minus its distance
    to the target. Auto-resets after `max_steps`, as the imagined core does."""
    pos = s.pos + 0.1 * jnp.clip(action, -1.0, 1.0)
    reached = Point(pos, s.target, s.t + 1)
    done = reached.t >= max_steps
    nxt = jax.tree.map(lambda a, b: jax.lax.select(done, a, b), _point_reset(key, 0)[1], reached)
    info = {"terminated": jnp.zeros((), bool), "final_z": jnp.concatenate([pos, s.target])}
    reward = -jnp.linalg.norm(pos - s.target)
    return jnp.concatenate([nxt.pos, nxt.target]), nxt, reward, done, info


def _point_return(policy_fn, key: jax.Array, n: int = 256, steps: int = 20) -> float:
    obs, state = jax.vmap(_point_reset, in_axes=(0, None))(jax.random.split(key, n), steps)
    total = jnp.zeros(n)
    for t in range(steps):
        k = jax.random.fold_in(key, t)
        keys = jax.random.split(k, n)
        obs, state, reward, _, _ = jax.vmap(_point_step, in_axes=(0, 0, 0, None))(
            keys, state, policy_fn(obs, k), steps
        )
        total += reward
    return float(total.mean())


def test_ppo_learns_to_reach_a_target_with_a_point_mass():
    # The learner on its own, on a task with a known answer: move toward the target.
    low, high = -jnp.ones(2), jnp.ones(2)
    stats = np.random.default_rng(0).uniform(-1.0, 1.0, (256, 4))
    cfg = PPOConfig(num_envs=64, rollout=16, iterations=20, lr=1e-3)
    policy, history = ppo(_point_reset, _point_step, 20, low, high, stats, cfg)
    assert history[-1]["reward"] > history[0]["reward"]
    key = jax.random.key(123)
    ours = _point_return(lambda obs, k: act(policy, obs, low, high), key)
    uniform = _point_return(lambda obs, k: jax.random.uniform(k, obs[:, :2].shape, minval=-1), key)
    # Random actions score -21.6 per 20-step episode here; these 20 iterations reach -7.9.
    assert ours > 0.7 * uniform, (ours, uniform)


def test_the_rl_command_trains_scores_and_writes_a_report(imagined, tmp_path, capsys):
    loaded, _ = imagined
    save(loaded, tmp_path / "ckpt")
    argv = ["rl", "--ckpt", str(tmp_path / "ckpt"), "--iterations", "1", "--envs", "8"]
    argv += ["--episodes", "2", "--steps", "2", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "imagined reward/step" in printed and "random" in printed
    report = json.loads((tmp_path / "out" / "rl.json").read_text())
    assert len(report["history"]) == 1 and report["ppo"]["num_envs"] == 8
    assert len(report["policy"]["returns"]) == 2 and "final_distance" in report["random"]
    assert main(["rl", "--ckpt", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.skipif(
    not (CHECKPOINT / "model.safetensors").exists(),
    reason="needs the shipped reacher checkpoint (checkpoints/reacher)",
)
@pytest.mark.heavy
def test_a_policy_trained_in_imagination_beats_random_in_the_true_simulator():
    loaded = load(CHECKPOINT)
    # A small budget for a 2-core CPU: an iteration (256 envs x 16 steps) takes about 0.1 s after
    # the compile, so training is ~20 s. Measured: true return -8.1 against random's -10.9.
    cfg = dataclasses.replace(PPOConfig(), iterations=150, collect_episodes=32)
    t0 = time.perf_counter()
    policy, history = train_in_imagination(loaded, cfg)
    seconds = time.perf_counter() - t0
    assert history[-1]["reward"] > history[0]["reward"], (history[0], history[-1])
    ours = evaluate_in_world(loaded, policy, "reacher", episodes=10, steps=50, seed=1000)
    dt = loaded.cfg.samples_per_step / SAMPLE_RATE
    rand = evaluate_random(
        "reacher", episodes=10, steps=50, seed=1000, size=loaded.cfg.frame_size, control_dt=dt
    )
    assert ours["mean_return"] > rand["mean_return"], (ours, rand, seconds)
