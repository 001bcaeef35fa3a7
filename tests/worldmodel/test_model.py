"""The world model's parts: tokenisers, heads and losses by shape and key; encoding from one
modality; the EMA; golden values; staged freezing; save, stop and resume."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from worldmodel.audio import griffin_lim, log_mel
from worldmodel.config import MODALITIES, preset
from worldmodel.encoders import (
    grid_coords,
    soft_argmax,
    token_counts,
    token_labels,
    with_prev_frames,
)
from worldmodel.heads import HEADS, decode_caption, depth_to_space, keypoint_maps
from worldmodel.losses import FROZEN, STAGES, effective_rank, loss_fn, modality_mask, vicreg
from worldmodel.model import new_model
from worldmodel.record import RecordConfig, record
from worldmodel.train import init_state, make_step, optimizer, restore, stage_at, train

MICRO = dict(
    width=32,
    depth=1,
    heads=2,
    stem=(8, 16, 16),
    latent_dim=32,
    hidden_dim=32,
    decoder_channels=(16, 8, 8),
)


def micro(**train):
    m, t = preset("tiny", **MICRO, **{"batch": 2, "context": 2, "horizon": 3, **train})
    return dataclasses.replace(m, vocab_size=24, proprio_dim=4, action_dim=2), t


def fake_batch(m, B=2, W=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "frame": jnp.asarray(rng.integers(0, 255, (B, W, 64, 64, 3)), jnp.uint8),
        "audio": jnp.asarray(rng.normal(0, 0.1, (B, W, 800)), jnp.float32),
        "caption_tokens": jnp.asarray(rng.integers(0, m.vocab_size, (B, W, 16)), jnp.int32),
        "proprio": jnp.asarray(rng.normal(size=(B, W, 4)), jnp.float32),
        "action": jnp.asarray(rng.uniform(-1, 1, (B, W - 1, 2)), jnp.float32),
        "reward": jnp.asarray(rng.normal(size=(B, W - 1)), jnp.float32),
        "done": jnp.zeros((B, W - 1), jnp.float32),
    }


def test_tokenisers_give_one_token_list_per_modality():
    m, _ = micro()
    model = new_model(m, 0)
    obs = {
        k: v[:, 0]
        for k, v in fake_batch(m).items()
        if k in ("frame", "audio", "caption_tokens", "proprio")
    }
    toks = model.encoder.tokens(obs)
    assert list(toks) == [*MODALITIES, "spatial", "keypoints"]
    assert toks["keypoints"].shape == (2, m.keypoints, 2)
    for name, n in token_counts(m).items():
        assert toks[name].shape == (2, n, m.width), name
    assert toks["spatial"].shape == (2, m.grid, m.grid, m.spatial_channels)
    z, attn = model.encoder(obs, jnp.ones((2, 4), bool), return_attention=True)
    n_tokens = len(token_labels(m))
    assert z.shape == (2, m.z_dim) and attn.shape == (2, m.depth, m.heads, n_tokens, n_tokens)


def test_every_head_decodes_a_latent_to_its_modality_shape():
    m, _ = micro()
    assert "proprio" not in new_model(m, 0).decode(jnp.zeros((1, m.z_dim)))  # off by default
    m = dataclasses.replace(m, proprio_head=True)
    out = new_model(m, 0).decode(jnp.zeros((3, m.z_dim)))
    assert set(out) == set(HEADS)
    assert out["proprio"].shape == (3, m.proprio_dim)
    assert out["frame"].shape == (3, 64, 64, 3)
    assert out["audio"].shape == (3, m.mel_frames, m.n_mels)
    assert out["caption"].shape == (3, 16, m.vocab_size)
    assert out["reward"].shape == (3,) and out["done"].shape == (3,)


def test_captions_decode_to_the_most_likely_well_formed_sequence():
    """Tokens: 0 <pad>, 1 <eos>, 2.. words. Doubt between an empty caption and a sentence gives
    one of the two, never words around a <pad>; a confident sentence decodes as the argmax."""
    L, V = 6, 5

    def logits(rows):  # rows: per position, {token: probability}; the rest share what is left
        p = np.full((L, V), 1e-3)
        for i, row in enumerate(rows):
            for tok, q in row.items():
                p[i, tok] = q
        return jnp.log(jnp.asarray(p / p.sum(-1, keepdims=True)))[None]

    # "w2 w3 (w4 | nothing)": position 2 leans <pad> (from the empty caption's mass), position 3 to
    # a word; greedy gives w2 w3 <pad> w4 ..., the decoder a caption that ends.
    doubt = [{2: 0.55, 1: 0.45}, {3: 0.55, 0: 0.45}, {0: 0.45, 4: 0.3, 2: 0.25}, {4: 0.5, 0: 0.3}]
    doubt += [{1: 0.5, 0: 0.5}, {0: 0.99}]
    greedy = np.asarray(jnp.argmax(logits(doubt), -1))[0]
    assert list(greedy[:4]) == [2, 3, 0, 4]
    tokens = np.asarray(decode_caption(logits(doubt)))[0]
    k = list(tokens).index(1)
    assert all(t >= 2 for t in tokens[:k]) and all(t == 0 for t in tokens[k + 1 :])
    sure = [{2: 0.9}, {3: 0.9}, {1: 0.9}, {0: 0.9}, {0: 0.9}, {0: 0.9}]
    np.testing.assert_array_equal(decode_caption(logits(sure))[0], [2, 3, 1, 0, 0, 0])
    empty = [{1: 0.9}] + [{0: 0.9}] * 5
    np.testing.assert_array_equal(decode_caption(logits(empty))[0], [1, 0, 0, 0, 0, 0])
    assert decode_caption(jnp.zeros((2, 3, L, V))).shape == (2, 3, L)


@pytest.mark.parametrize("index", range(4))
def test_a_single_modality_is_enough_and_absent_ones_do_not_matter(index):
    m, _ = micro()
    model = new_model(m, 0)
    b = fake_batch(m)
    obs = {k: b[k][:, 0] for k in ("frame", "audio", "caption_tokens", "proprio")}
    present = jnp.zeros((2, 4), bool).at[:, index].set(True)
    z = model.encode(obs, present)
    other = {
        k: (
            v
            if k == ("caption_tokens" if MODALITIES[index] == "caption" else MODALITIES[index])
            else jnp.zeros_like(v)
        )
        for k, v in obs.items()
    }
    np.testing.assert_allclose(z, model.encode(other, present), atol=1e-5)
    assert np.all(np.isfinite(z))


def test_keypoints_find_a_peak_to_a_fraction_of_a_cell_and_the_decoder_draws_them_there():
    # A bump between cells (5.3, 9.6) of a 16 x 16 map: the soft argmax lands on it, not on a cell.
    i, j = np.mgrid[:16, :16]
    logits = -((i - 9.6) ** 2 + (j - 5.3) ** 2) / 2.0
    kp = soft_argmax(jnp.asarray(logits, jnp.float32)[None, :, :, None])
    np.testing.assert_allclose(kp[0, 0], [(5.3 + 0.5) / 8 - 1, (9.6 + 0.5) / 8 - 1], atol=1e-3)
    np.testing.assert_allclose(grid_coords(4), [-0.75, -0.25, 0.25, 0.75])
    maps = keypoint_maps(jnp.array([[[-0.75, 0.25]]]), 4)  # x in cell 0, y in cell 2
    assert maps.shape == (1, 4, 4, 1)
    assert np.unravel_index(int(jnp.argmax(maps[0, :, :, 0])), (4, 4)) == (2, 0)


def test_keypoints_end_z_come_from_the_frame_and_are_guessed_without_one():
    m, _ = micro()
    m = dataclasses.replace(m, keypoints=3)
    assert m.z_dim == m.spatial_dim + m.latent_dim + 6
    model = new_model(m, 0)
    b = fake_batch(m)
    obs = {k: b[k][:, 0] for k in ("frame", "audio", "caption_tokens", "proprio")}
    toks = model.encoder.tokens(obs)
    assert toks["keypoints"].shape == (2, 3, 2)
    z = model.encode(obs)
    np.testing.assert_allclose(z[:, -6:], toks["keypoints"].reshape(2, 6), atol=1e-6)
    blind = model.encode(obs, jnp.array([[False, True, True, True]] * 2))
    assert not np.allclose(blind[:, -6:], z[:, -6:]) and np.all(np.abs(blind[:, -6:]) <= 1)
    # The frame head reads them: moving a keypoint changes the picture.
    moved = z.at[:, -6:].set(0.5)
    assert not np.allclose(model.heads["frame"](z), model.heads["frame"](moved))


def test_a_motion_model_sees_the_frame_difference_and_none_without_a_previous_frame():
    m, t = micro()
    m = dataclasses.replace(m, motion=True)
    model = new_model(m, 0)
    b = fake_batch(m)
    seq = with_prev_frames({"frame": b["frame"]})
    np.testing.assert_array_equal(seq["prev_frame"][:, 0], b["frame"][:, 0])
    np.testing.assert_array_equal(seq["prev_frame"][:, 1:], b["frame"][:, :-1])
    obs = {k: b[k][:, 1] for k in ("frame", "audio", "caption_tokens", "proprio")}
    still = model.encode(obs)  # no previous frame: no motion
    np.testing.assert_allclose(still, model.encode({**obs, "prev_frame": obs["frame"]}), atol=1e-6)
    moving = model.encode({**obs, "prev_frame": b["frame"][:, 0]})
    assert not np.allclose(moving, still, atol=1e-4)
    # Hidden frame, hidden motion: without the frame z does not depend on the previous one.
    blind = jnp.array([[False, True, True, True]] * 2)
    np.testing.assert_allclose(
        model.encode({**obs, "prev_frame": b["frame"][:, 0]}, blind)[:, m.spatial_dim :],
        model.encode(obs, blind)[:, m.spatial_dim :],
        atol=1e-6,
    )
    total, _ = loss_fn(model, model, b, jax.random.key(0), t, "joint")
    assert np.isfinite(float(total))
    # A model without motion ignores a previous frame.
    plain = new_model(micro()[0], 0)
    np.testing.assert_array_equal(
        plain.encode(obs), plain.encode({**obs, "prev_frame": b["frame"][:, 0]})
    )


def test_imagine_is_the_same_as_stepping_by_hand():
    m, _ = micro()
    model = new_model(m, 1)
    z0 = jax.random.normal(jax.random.key(0), (2, m.z_dim))
    actions = jax.random.uniform(jax.random.key(1), (2, 5, 2), minval=-1, maxval=1)
    _, zs = model.imagine(model.dynamics.initial(z0), actions)
    carry = model.dynamics.initial(z0)
    for t in range(5):
        carry = model.step(carry, actions[:, t])
        np.testing.assert_allclose(zs[:, t], carry[1], atol=1e-5)


def test_losses_are_a_dict_keyed_like_the_weights_in_every_stage():
    m, t = micro()
    model = new_model(m, 0)
    for stage in STAGES:
        total, metrics = loss_fn(model, model, fake_batch(m), jax.random.key(0), t, stage)
        assert set(t.weights) <= set(metrics) and np.isfinite(float(total)), stage
    assert stage_at(0, t) == "warmup" and stage_at(t.steps - 1, t) == "joint"
    # "keypoints" is the JEPA error on the keypoints alone; zero for a model without them (the
    # shipped balls and cartpole models).
    assert 0 < float(metrics["keypoints"]) != pytest.approx(float(metrics["jepa"]))
    # "proprio" is zero for a model without the proprio head (every shipped model so far).
    assert float(metrics["proprio"]) == 0.0
    m0, _ = micro(keypoints=0, proprio_head=True)
    model0 = new_model(m0, 0)
    _, metrics = loss_fn(model0, model0, fake_batch(m0), jax.random.key(0), t, "joint")
    assert set(t.weights) <= set(metrics) and float(metrics["keypoints"]) == 0.0
    assert float(metrics["proprio"]) > 0.0
    # A weights dict names only what it changes; an unknown loss is named.
    assert micro(weights={"frame": 5.0})[1].weights["keypoints"] == t.weights["keypoints"]
    with pytest.raises(ValueError, match="unknown loss 'fram'"):
        micro(weights={"fram": 5.0})


def test_golden_values_of_small_layers():
    x = jnp.arange(16.0).reshape(1, 1, 1, 16)
    np.testing.assert_array_equal(depth_to_space(x)[0, :, :, 0], [[0, 4], [8, 12]])
    z = jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    # std of dim 0 = sqrt(0.5 + 1e-4) -> hinge 0.29282; dim 1 (std 1.41) is past it; no covariance.
    np.testing.assert_allclose(vicreg(z), (1 - np.sqrt(0.5 + 1e-4)) / 2, rtol=1e-5)
    np.testing.assert_allclose(effective_rank(jnp.eye(4) - 0.25), 3.0, rtol=1e-4)
    mask = modality_mask(jax.random.key(0), 1000, 0.9, single=False)
    assert bool(mask.any(1).all())
    assert bool((modality_mask(jax.random.key(0), 50, 0.0, single=True).sum(1) == 1).all())


def test_log_mel_of_silence_is_the_floor_and_griffin_lim_inverts_a_tone():
    silence = log_mel(jnp.zeros((1, 800)), 32, 8)
    np.testing.assert_allclose(silence, np.log(1e-5), rtol=1e-6)
    t = np.arange(800) / 16000
    tone = jnp.asarray(0.3 * np.sin(2 * np.pi * 1000 * t), jnp.float32)
    wave = griffin_lim(log_mel(tone[None], 32, 8)[0], 800)
    spec = np.abs(np.fft.rfft(np.asarray(wave)))
    assert abs(np.fft.rfftfreq(800, 1 / 16000)[spec.argmax()] - 1000) < 60


def test_the_target_encoder_is_an_ema_and_frozen_parts_do_not_move():
    m, t = micro(ema=0.9, stages=(0.5, 0.75), steps=4)
    tx = optimizer(t)
    graphdef, state = init_state(m, t, tx)
    before = jax.tree.map(np.array, state)
    step = make_step(graphdef, t, tx, "warmup")
    state, _ = step(state, fake_batch(m), jax.random.key(0))
    after = jax.tree.map(np.array, state)
    for e0, p1, e1 in zip(
        jax.tree.leaves(before["ema"]),
        jax.tree.leaves(after["params"]),
        jax.tree.leaves(after["ema"]),
        strict=True,
    ):
        np.testing.assert_allclose(e1, 0.9 * e0 + 0.1 * p1, rtol=1e-5, atol=1e-7)
    assert "dynamics" in FROZEN["warmup"]
    # The warm-up schedule starts at lr 0: take a second step before asking what moved.
    state, _ = step(state, fake_batch(m, seed=1), jax.random.key(1))
    after = jax.tree.map(np.array, state)
    for a, b in zip(
        jax.tree.leaves(before["params"]["dynamics"]),
        jax.tree.leaves(after["params"]["dynamics"]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(before["params"]["encoder"]),
            jax.tree.leaves(after["params"]["encoder"]),
            strict=False,
        )
    ]
    assert any(moved)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("wm") / "balls"
    record(RecordConfig(world="balls", episodes=2, steps=12, seed=0), out, progress=False)
    return out


@pytest.mark.heavy
def test_save_stop_and_resume_gives_the_same_parameters(tiny_data, tmp_path):
    m, t = preset(
        "tiny", **MICRO, batch=2, context=2, horizon=3, steps=6, ckpt_every=3, stages=(0.0, 0.5)
    )  # two stages (align, joint), so that the run resumes into the next one
    train(tiny_data, tmp_path / "straight", m, t, progress=False)
    train(tiny_data, tmp_path / "resumed", m, t, progress=False, stop_after=3)
    train(tiny_data, tmp_path / "resumed", m, t, progress=False)
    lines = [
        json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    full = [
        json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    ]
    np.testing.assert_allclose([x["loss"] for x in lines], [x["loss"] for x in full], rtol=1e-6)
    from worldmodel.dataset import read_meta
    from worldmodel.train import model_config_for

    mc = model_config_for(read_meta(tiny_data), m)
    tx = optimizer(t)
    graphdef, template = init_state(mc, t, tx)
    a = restore(tmp_path / "straight", graphdef, template, t)
    b = restore(tmp_path / "resumed", graphdef, template, t)
    for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"]), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_the_frame_loss_weighs_foreground_pixels_up():
    from worldmodel.losses import frame_loss

    background = jnp.zeros((4, 4, 3), jnp.uint8)
    frame = background.at[0, 0].set(255)[None]  # one bright foreground pixel
    pred = jnp.zeros((1, 4, 4, 3))  # the background alone: misses the foreground
    plain = frame_loss(pred, frame, None, 0.0)
    np.testing.assert_allclose(plain, 1 / 16, rtol=1e-6)
    # Weight 10 on 1 of 16 pixels: error 11 * 1 over a total weight of 15 + 11.
    np.testing.assert_allclose(frame_loss(pred, frame, background, 10.0), 11 / 26, rtol=1e-6)


def test_an_exported_checkpoint_loads_back_and_names_what_does_not_match(tmp_path):
    from safetensors.numpy import load_file, save_file

    from worldmodel.checkpoint import fresh, load, save

    world_describe = {
        "world": "balls",
        "frame_shape": [64, 64, 3],
        "audio": {"sample_rate": 16000, "samples_per_step": 800},
        "caption": {"vocab": [f"w{i}" for i in range(24)], "max_tokens": 16},
        "action": {"names": ["x", "y"], "low": [-1, -1], "high": [1, 1]},
        "proprio_names": ["a", "b", "c", "d"],
        "state_names": ["s"],
    }
    m, _ = micro()
    loaded = fresh(world_describe, m)
    for half in (False, True):
        path = save(loaded, tmp_path / f"ck{half}", card={"note": "test"}, half=half)
        back = load(tmp_path / f"ck{half}")
        for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(back.params), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-3 if half else 0)
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name][..., :1]
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match=f"tensor '{name}' is"):
        load(path.parent)


def test_the_reward_and_termination_heads_step_at_their_own_learning_rate():
    m, t = micro(task_head_lr=3.0, warmup=1)
    tx = optimizer(t)
    _, state = init_state(m, t, tx)
    params = state["params"]
    grads = jax.tree.map(jnp.ones_like, params)
    update = jax.jit(tx.update)
    updates, opt = update(grads, state["opt"], params)
    updates, _ = update(grads, opt, params)  # past the warm-up's zero rate
    size = {
        jax.tree_util.keystr(k): float(jnp.abs(v).max())
        for k, v in jax.tree_util.tree_leaves_with_path(updates)
    }
    caption = [v for k, v in size.items() if "'caption'" in k and "heads" in k]
    task = [v for k, v in size.items() if "'reward'" in k or "'done'" in k]
    assert len(task) == 8 and caption
    np.testing.assert_allclose(task, 3.0 * caption[0], rtol=1e-3)


def test_a_non_finite_update_is_skipped_and_counted():
    from worldmodel.train import skipped_updates

    t = dataclasses.replace(micro()[1], warmup=0)
    tx = optimizer(t)
    params = {"encoder": {"w": jnp.ones(3)}, "heads": {"reward": {"w": jnp.ones(2)}}}
    opt = tx.init(params)
    bad = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)
    updates, opt = tx.update(bad, opt, params)
    assert int(skipped_updates(opt)) == 1
    for u in jax.tree.leaves(updates):
        np.testing.assert_array_equal(u, 0.0)
    good = jax.tree.map(jnp.ones_like, params)
    updates, opt = tx.update(good, opt, params)
    assert int(skipped_updates(opt)) == 0
    assert all(bool((u < 0).all()) for u in jax.tree.leaves(updates))


def test_a_checkpoint_of_another_training_state_is_named_not_restored(tmp_path):
    import orbax.checkpoint as ocp

    from worldmodel.train import TrainingError

    m, t = micro()
    graphdef, state = init_state(m, t, optimizer(t))
    with ocp.CheckpointManager((tmp_path / "ckpt").absolute()) as mgr:
        mgr.save(
            4, args=ocp.args.StandardSave({"params": {"w": np.zeros(2)}, "opt": [np.zeros(1)]})
        )
    with pytest.raises(TrainingError, match=r"ckpt/4: this checkpoint's training state does not"):
        restore(tmp_path, graphdef, state, t)
