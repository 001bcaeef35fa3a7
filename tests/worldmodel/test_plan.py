"""The planners find known optima, respect bounds, warm-start and plan in a latent space."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from worldmodel.config import preset
from worldmodel.model import new_model
from worldmodel.plan import PlanConfig, goal_cost, goal_weights, optimise, reward_cost, shift

TARGET = jnp.array([[0.5, -0.3], [0.2, 0.9], [-0.7, 0.1]])


@pytest.mark.parametrize("method", ["mppi", "cem"])
def test_the_planner_finds_the_minimum_of_a_quadratic(method):
    cfg = PlanConfig(method=method, horizon=3, samples=512, iterations=8)
    cost = jax.jit(lambda a: jnp.sum((a - TARGET) ** 2, axis=(1, 2)))
    plan, best, samples = optimise(cost, jax.random.key(0), jnp.zeros((3, 2)), cfg)
    np.testing.assert_allclose(plan, TARGET, atol=0.08)
    assert float(best) < 0.05 and samples.shape == (512, 3, 2)


def test_plans_respect_the_action_bounds():
    cfg = PlanConfig(horizon=2, samples=256, iterations=10)
    outside = jnp.array([[3.0, -3.0], [3.0, -3.0]])
    plan, _, samples = optimise(
        lambda a: jnp.sum((a - outside) ** 2, axis=(1, 2)),
        jax.random.key(1),
        jnp.zeros((2, 2)),
        cfg,
    )
    assert float(jnp.abs(samples).max()) <= 1.0
    np.testing.assert_allclose(plan, [[1.0, -1.0], [1.0, -1.0]], atol=0.05)


def test_the_warm_start_drops_the_executed_action():
    plan = jnp.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(shift(plan), [[2, 3], [4, 5], [6, 7], [6, 7]])


def test_latent_costs_plan_through_a_world_model():
    m, _ = preset("tiny", width=32, depth=1, heads=2, latent_dim=16, hidden_dim=16)
    m = dataclasses.replace(m, vocab_size=24)
    graphdef, params = nnx.split(new_model(m, 0), nnx.Param)
    carry = (jnp.zeros((1, 16)), jax.random.normal(jax.random.key(0), (1, m.z_dim)))
    cfg = PlanConfig(horizon=5, samples=64, iterations=3)
    for cost in (
        goal_cost(graphdef, params, carry, jnp.zeros(m.z_dim)),
        reward_cost(graphdef, params, carry, done_penalty=1.0),
    ):
        cost = jax.jit(cost)
        plan, best, _ = optimise(cost, jax.random.key(2), jnp.zeros((5, 2)), cfg)
        assert plan.shape == (5, 2) and np.isfinite(float(best))
        # Planning beats doing nothing under the model's own cost.
        assert float(cost(plan[None])[0]) <= float(cost(jnp.zeros((1, 5, 2)))[0]) + 1e-5


def test_goals_speak_for_their_part_of_z():
    """A goal frame is compared by keypoints (where things are), a caption by the global part,
    and a model without keypoints compares a frame over all of z."""
    m, _ = preset("tiny")
    K, S = m.keypoint_offset, m.spatial_dim
    frame, caption = goal_weights(m, "frame"), goal_weights(m, "caption")
    assert float(frame[K:].min()) == 1.0 and float(frame[:K].max()) == 0.0
    assert float(caption[S:K].min()) == 1.0 and float(caption[:S].max()) == 0.0
    assert float(caption[K:].max()) == 0.0
    assert float(goal_weights(dataclasses.replace(m, keypoints=0), "frame").min()) == 1.0
    # The cost ignores the dimensions a goal does not speak for.
    graphdef, params = nnx.split(new_model(m, 0), nnx.Param)
    carry = (jnp.zeros((1, m.hidden_dim)), jnp.zeros((1, m.z_dim)))
    goal = jax.random.normal(jax.random.key(3), (m.z_dim,))
    moved = goal.at[:K].add(5.0)
    actions = jax.random.uniform(jax.random.key(4), (3, 4, 2), minval=-1, maxval=1)
    np.testing.assert_allclose(
        goal_cost(graphdef, params, carry, goal, frame)(actions),
        goal_cost(graphdef, params, carry, moved, frame)(actions),
        rtol=1e-5,
    )


@pytest.mark.parametrize("goal", ["reward", "frame", "caption"])
def test_plan_writes_the_report_and_the_oracle_reaches_the_target(tmp_path, goal):
    """`worldmodel plan`'s runner on an untrained model: the report's exact shape, a GIF, and an
    oracle (same planner, true simulator) that reaches targets random actions do not."""
    import json

    import imageio.v3 as iio

    import sims
    from worldmodel.agent import PlanRun, plan_report
    from worldmodel.checkpoint import fresh

    world = sims.make("reacher")
    # The frame goal runs a motion model (it sees frame differences; its goal picture has none).
    m, _ = preset(
        "tiny", width=32, depth=1, heads=2, latent_dim=16, hidden_dim=16, motion=goal == "frame"
    )
    loaded = fresh(world.describe(), m)
    world.close()
    cfg = PlanConfig(horizon=8, samples=64, iterations=2)
    # The caption goal also rebuilds the memory from the last 4 steps at each control step.
    run = PlanRun(goal=goal, episodes=2, steps=20, plan=cfg, memory=4 if goal == "caption" else 0)
    report = plan_report(loaded, run, tmp_path)
    assert json.loads((tmp_path / "plan.json").read_text()) == report
    assert list(report) == ["world", "goal", "episodes", "steps", "world_model", "oracle", "random"]
    for who in ("world_model", "oracle"):
        assert set(report[who]) == {"success", "final_distance", "plans_per_s"}
    assert set(report["random"]) == {"success", "final_distance"}
    assert report["oracle"]["success"] == 1.0 and report["random"]["success"] == 0.0
    assert report["oracle"]["final_distance"] < 0.5 * report["random"]["final_distance"]
    gif = iio.imread(tmp_path / "plan.gif")
    assert gif.shape == (20, 256, 512, 3) and gif[:, :, 256:].std() > 5  # the goal panel


def test_recall_rebuilds_the_memory_a_grounded_rollout_keeps():
    """`Imaginer.recall` over a window equals stepping and grounding one observation at a time."""
    import sims
    from worldmodel.checkpoint import fresh
    from worldmodel.imagine import Imaginer

    world = sims.make("reacher")
    m, _ = preset("tiny", width=32, depth=1, heads=2, latent_dim=16, hidden_dim=16)
    imaginer = Imaginer(fresh(world.describe(), m))
    world.close()
    zs = jax.random.normal(jax.random.key(0), (2, 4, m.z_dim))
    acts = jax.random.uniform(jax.random.key(1), (2, 3, 2), minval=-1, maxval=1)
    carry = imaginer.initial(zs[:, 0])
    for t in range(3):
        carry = imaginer.ground(imaginer._step(imaginer.params, carry, acts[:, t]), zs[:, t + 1])
    h, z = imaginer.recall(zs, acts)
    np.testing.assert_allclose(h, carry[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(z, zs[:, -1])
    assert float(jnp.abs(h).max()) > 0  # the window left a memory
