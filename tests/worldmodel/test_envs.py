"""The imagined environment: a jittable, vmappable core that auto-resets, and Gymnasium adapters
that pass the env checker (on an untrained tiny model: the contract does not depend on weights)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sims
from worldmodel.checkpoint import fresh
from worldmodel.envs import (
    ImaginedEnv,
    ImaginedVectorEnv,
    collect,
    make_core,
    make_params,
)
from worldmodel.eval import fit_readout

N = 4  # sub-environments in the batched tests


@pytest.fixture(scope="module")
def imagined(micro_model):
    """A fresh tiny balls model at 32x32 with a few encoded real observations."""
    world = sims.make("balls", size=32)
    loaded = fresh(world.describe(), micro_model)
    collected = collect(loaded, world, episodes=2, steps=6)
    yield loaded, collected, world
    world.close()


@pytest.fixture(scope="module")
def latent_step(imagined):
    """The latent core's jitted, vmapped step (params are traced: one compile for every test)."""
    loaded, _, _ = imagined
    core = make_core(loaded, "latent")
    return core, jax.jit(jax.vmap(core.step, in_axes=(0, 0, 0, None)))


def _is_start(z: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.isclose(z[:, None, :], starts[None], atol=0, rtol=0).all(-1).any(-1)


def test_collect_encodes_every_real_observation(imagined):
    loaded, collected, _ = imagined
    D, P = loaded.cfg.z_dim, loaded.cfg.proprio_dim
    assert collected.starts.shape == (2, D) and collected.starts.dtype == np.float32
    assert collected.z.shape == (2 * 7, D) and collected.proprio.shape == (2 * 7, P)
    np.testing.assert_array_equal(collected.starts, collected.z[[0, 7]])
    assert np.isfinite(collected.z).all()


def test_the_ridge_readout_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((200, 6)).astype(np.float32)
    w_true, b_true = rng.standard_normal((6, 3)), np.array([1.0, -2.0, 0.5])
    w, b = fit_readout(z, z @ w_true + b_true, ridge=1e-6)
    np.testing.assert_allclose(w, w_true, atol=1e-3)
    np.testing.assert_allclose(b, b_true, atol=1e-3)


def test_decoded_proprio_comes_from_the_head_when_the_model_has_one(imagined, micro_model):
    import dataclasses

    from flax import nnx

    loaded, collected, world = imagined
    with_head = fresh(world.describe(), dataclasses.replace(micro_model, proprio_head=True))
    z = jnp.asarray(collected.z[3])
    for model in (loaded, with_head):
        params = make_params(model, collected)
        proprio = make_core(model, "decoded").observe(z, params)[0]["proprio"]
        if model.cfg.proprio_head:
            head = nnx.merge(model.graphdef, model.params).decode(z[None], ("proprio",))
            want = model.norm.proprio_world(np.asarray(head["proprio"][0]))
            np.testing.assert_allclose(model.norm.proprio(want), head["proprio"][0], atol=1e-5)
        else:
            want = z @ params.proprio_w + params.proprio_b
        np.testing.assert_allclose(proprio, want, rtol=1e-5, atol=1e-5)


def test_the_core_jits_vmaps_and_auto_resets_at_max_steps(imagined, latent_step):
    loaded, collected, _ = imagined
    core, step = latent_step
    D = loaded.cfg.z_dim
    # A threshold no probability exceeds: episodes end only by truncation.
    params = make_params(loaded, collected, max_steps=3, done_threshold=1.0)
    obs, state = jax.jit(jax.vmap(core.reset, in_axes=(0, None)))(
        jax.random.split(jax.random.key(0), N), params
    )
    assert obs.shape == (N, D) and obs.dtype == jnp.float32
    assert state.h.shape == (N, loaded.cfg.hidden_dim) and state.t.dtype == jnp.int32
    assert _is_start(np.asarray(state.z), collected.starts).all()
    action = jnp.tile(jnp.asarray([0.3, -0.7]), (N, 1))
    for t in range(1, 4):
        keys = jax.random.split(jax.random.key(t), N)
        obs, state, reward, done, info = step(keys, state, action, params)
        assert reward.shape == (N,) and reward.dtype == jnp.float32
        assert done.shape == (N,) and done.dtype == jnp.bool_
        assert not np.asarray(info["terminated"]).any()
        if t < 3:
            np.testing.assert_array_equal(state.t, t)
            assert not np.asarray(done).any()
    # The third step truncates every episode; what is returned is already the next one's start.
    assert np.asarray(info["truncated"]).all() and np.asarray(done).all()
    np.testing.assert_array_equal(state.t, 0)
    np.testing.assert_array_equal(state.h, 0)
    assert _is_start(np.asarray(state.z), collected.starts).all()
    np.testing.assert_array_equal(obs, state.z)
    assert not _is_start(np.asarray(info["final_z"]), collected.starts).any()


def test_one_jitted_step_matches_a_row_of_the_vmapped_step(imagined, latent_step):
    loaded, collected, _ = imagined
    core, step = latent_step
    params = make_params(loaded, collected, max_steps=10, done_threshold=1.0)
    keys = jax.random.split(jax.random.key(1), N)
    _, state = jax.vmap(core.reset, in_axes=(0, None))(keys, params)
    actions = jax.random.uniform(jax.random.key(2), (N, 2), minval=-1.0, maxval=1.0)
    batched = step(keys, state, actions, params)
    row = jax.tree.map(lambda x: x[2], (keys, state, actions))
    single = jax.jit(core.step)(*row, params)
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(batched), strict=True):
        np.testing.assert_allclose(a, b[2], rtol=1e-5, atol=1e-5)


def test_the_done_head_terminates_and_actions_are_clipped_to_the_bounds(imagined, latent_step):
    loaded, collected, _ = imagined
    core, step = latent_step
    # Every probability exceeds 0: each step terminates (and truncation is not reported with it).
    params = make_params(loaded, collected, max_steps=1, done_threshold=0.0)
    keys = jax.random.split(jax.random.key(3), N)
    _, state = jax.vmap(core.reset, in_axes=(0, None))(keys, params)
    high = jnp.ones((N, 2))
    _, _, r1, done, info = step(keys, state, high, params)
    assert np.asarray(info["terminated"]).all() and not np.asarray(info["truncated"]).any()
    assert np.asarray(done).all()
    # The world clips its controls to the bounds, and so does the dream.
    _, _, r5, _, info5 = step(keys, state, 5.0 * high, params)
    np.testing.assert_allclose(info5["final_z"], info["final_z"], rtol=1e-6)
    np.testing.assert_allclose(r5, r1, rtol=1e-6)


def test_the_gymnasium_env_passes_the_env_checker(imagined):
    loaded, _, world = imagined
    # No params given: the env collects its own real starts from the world.
    env = ImaginedEnv(
        loaded, world, max_steps=5, collect_episodes=1, collect_steps=3, render_mode="rgb_array"
    )
    assert env.params.starts.shape == (1, loaded.cfg.z_dim)
    check_env(env)
    obs, info = env.reset(seed=7)
    again, _ = env.reset(seed=7)
    for k in ("frame", "audio", "proprio"):
        np.testing.assert_array_equal(obs[k], again[k])
    assert env.observation_space.contains(obs) and isinstance(info["caption"], str)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float) and isinstance(terminated, bool)
    assert isinstance(truncated, bool) and isinstance(info["caption"], str)
    assert info["caption_tokens"].shape == (16,) and info["step"] == 1
    assert env.render().shape == (32, 32, 3) and env.render().dtype == np.uint8


def test_the_vector_env_batches_and_auto_resets(imagined):
    loaded, collected, _ = imagined
    params = make_params(loaded, collected, max_steps=2, done_threshold=1.0)
    env = ImaginedVectorEnv(loaded, N, params=params, render_mode="rgb_array")
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert obs["frame"].shape == (N, 32, 32, 3) and obs["audio"].shape == (N, 800)
    assert obs["proprio"].shape == (N, 4) and info["caption"].shape == (N,)
    actions = np.tile(np.array([0.5, -0.5], np.float32), (N, 1))
    first = env.step(actions)
    obs, reward, terminated, truncated, info = env.step(actions)
    assert env.observation_space.contains(obs)
    assert reward.shape == (N,) and reward.dtype == np.float32
    assert truncated.all() and not terminated.any() and info["_final_obs"].all()
    assert info["final_obs"]["frame"].shape == (N, 32, 32, 3)
    assert env.render().shape == (N, 32, 32, 3)
    # The same seed and actions give the same episodes.
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(again["frame"], env.reset(seed=3)[0]["frame"])
    repeat = env.step(actions)
    np.testing.assert_array_equal(repeat[0]["frame"], first[0]["frame"])
    np.testing.assert_array_equal(repeat[1], first[1])
