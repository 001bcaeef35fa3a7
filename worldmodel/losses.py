"""The training objective: JEPA latent prediction, a VICReg anti-collapse term, and per-modality
head losses, returned as a dict keyed by name so that `sum_m lambda_m L_m` is explicit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from worldmodel.audio import log_mel
from worldmodel.config import MODALITIES, ModelConfig, TrainConfig
from worldmodel.encoders import with_prev_frames
from worldmodel.model import WorldModel

STAGES = ("warmup", "align", "joint")
# What each stage freezes: warm-up trains encoders and heads (no dynamics); alignment trains only
# the encoder to map single modalities onto the all-modality target; joint trains everything.
FROZEN = {"warmup": ("dynamics",), "align": ("dynamics", "heads"), "joint": ()}


def vicreg(z: jax.Array) -> jax.Array:
    """VICReg variance + covariance on z float[N, D]: every dimension alive and decorrelated."""
    z = z - z.mean(0)
    std = jnp.sqrt(z.var(0) + 1e-4)
    variance = jnp.mean(jax.nn.relu(1.0 - std))
    cov = (z.T @ z) / (z.shape[0] - 1)
    off = cov - jnp.diag(jnp.diag(cov))
    return variance + jnp.sum(off**2) / z.shape[1]


def effective_rank(z: jax.Array) -> jax.Array:
    """exp(entropy) of the normalised singular values of centred z float[N, D] (Roy & Vetterli)."""
    s = jnp.linalg.svd(z - z.mean(0), compute_uv=False)
    p = s / jnp.maximum(s.sum(), 1e-12)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(p), 0.0)))


def modality_mask(key: jax.Array, B: int, drop: float, single: bool) -> jax.Array:
    """bool[B, 4]: which modalities the encoder sees; never none; exactly one when `single`."""
    k1, k2 = jax.random.split(key)
    pick = jax.random.randint(k1, (B,), 0, len(MODALITIES))
    one = jax.nn.one_hot(pick, len(MODALITIES), dtype=bool)
    if single:
        return one
    keep = jax.random.uniform(k2, (B, len(MODALITIES))) >= drop
    return jnp.where(keep.any(1, keepdims=True), keep, one)


def _flat(obs: dict[str, jax.Array]) -> dict[str, jax.Array]:
    return {k: v.reshape(-1, *v.shape[2:]) for k, v in obs.items()}


def rollout(model: WorldModel, z: jax.Array, action: jax.Array, context: int) -> jax.Array:
    """Latents z float[B, W, D] and actions [B, W-1, A] -> predictions float[B, W-1, D] of z[:, 1:]:
    grounded on the encoded latent for the first `context` steps, open loop after."""
    _B, W, _ = z.shape
    carry = model.dynamics.initial(z[:, 0])

    def body(carry, t):
        h, z_prev = carry
        z_in = jnp.where(t < context, z[:, t], z_prev)
        carry = model.dynamics((h, z_in), action[:, t])
        return carry, carry[1]

    _, preds = jax.lax.scan(body, carry, jnp.arange(W - 1))
    return jnp.swapaxes(preds, 0, 1)


def frame_loss(
    pred: jax.Array, frame: jax.Array, background: jax.Array | None, foreground_weight: float
) -> jax.Array:
    """Mean squared pixel error, foreground pixels (away from the background) weighted up."""
    target = frame.astype(jnp.float32) / 255.0
    err = (pred - target) ** 2
    if background is None or not foreground_weight:
        return jnp.mean(err)
    fg = jnp.abs(target - background.astype(jnp.float32) / 255.0).max(-1, keepdims=True) > 0.1
    w = 1.0 + foreground_weight * fg
    return jnp.sum(w * err) / jnp.sum(jnp.broadcast_to(w, err.shape))


def head_losses(
    model: WorldModel,
    cfg: ModelConfig,
    lat: jax.Array,
    obs: dict[str, jax.Array],
    frame_rows: jax.Array | None = None,
    background: jax.Array | None = None,
    foreground_weight: float = 0.0,
) -> dict[str, jax.Array]:
    """Observation-head losses on latents float[N, D] against their observations (flattened to
    [N, ...]); frames are decoded only for `frame_rows` when given (the decoder dominates a CPU
    step)."""
    pred = model.decode(lat, ("audio", "caption"))
    rows = jnp.arange(lat.shape[0]) if frame_rows is None else frame_rows
    frames = model.heads["frame"](lat[rows])
    target_mel = log_mel(obs["audio"], cfg.n_mels, cfg.mel_frames)
    out = {
        "frame": frame_loss(frames, obs["frame"][rows], background, foreground_weight),
        "audio": jnp.mean(jnp.abs(pred["audio"] - target_mel)),
        "caption": optax.softmax_cross_entropy_with_integer_labels(
            pred["caption"], obs["caption_tokens"]
        ).mean(),
        "proprio": jnp.zeros(()),
    }
    if cfg.proprio_head:
        out["proprio"] = jnp.mean((model.heads["proprio"](lat) - obs["proprio"]) ** 2)
    return out


def task_losses(
    model: WorldModel,
    lat: jax.Array,
    reward: jax.Array,
    done: jax.Array,
    reward_std: float,
    seen: jax.Array,
) -> dict[str, jax.Array]:
    """Reward and termination losses on latents float[N, D] of the steps those followed, over the
    rows whose latent grew from a seen frame (`seen` bool[N]). The reward's squared error is in
    units of the training set's reward spread `reward_std`."""
    w = seen.astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1.0)
    err = (model.heads["reward"](lat) - reward) / reward_std
    bce = optax.sigmoid_binary_cross_entropy(model.heads["done"](lat), done)
    return {"reward": jnp.sum(w * err**2) / n, "done": jnp.sum(w * bce) / n}


def loss_fn(
    model: WorldModel,
    target: WorldModel,
    batch: dict[str, jax.Array],
    key: jax.Array,
    tcfg: TrainConfig,
    stage: str,
    scales: dict[str, jax.Array] | None = None,
    background: jax.Array | None = None,
    reward_std: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The staged objective on a batch of windows; returns (total, {loss name: value, ...}).
    `scales` multiply the weights (gradient balancing: 1 / each loss's running mean)."""
    cfg = model.cfg
    obs = {k: batch[k] for k in ("frame", "audio", "caption_tokens", "proprio")}
    B, W = batch["frame"].shape[:2]
    C = tcfg.context
    flat = _flat(with_prev_frames(obs) if cfg.motion else obs)
    present = modality_mask(key, B * W, tcfg.modality_dropout, single=stage == "align")
    z = model.encode(flat, present)
    # The reward and termination heads learn from latents that saw the frame (directly or at the
    # start of their rollout): with it hidden (modality dropout) where things are is a guess, and
    # those rows taught the reacher reward head noise (held-out R^2 0.5 against 0.9 for a read-out).
    frame_seen = present[:, 0].reshape(B, W)
    z_target = jax.lax.stop_gradient(target.encode(flat))
    zero = jnp.zeros(())
    # VICReg keeps the global part alive; the spatial map and keypoints are anchored to the frame
    # by the stem and the frame loss (map cells are mostly background: unit variance there would
    # be noise; a keypoint on an object moves as much as the object does).
    losses = {
        "vicreg": vicreg(z[:, cfg.spatial_dim : cfg.keypoint_offset]),
        "jepa": zero,
        "keypoints": zero,
    }
    sg = (lambda x: x) if tcfg.heads_grad_to_latent else jax.lax.stop_gradient
    fg_w = tcfg.foreground_weight
    if stage == "align":
        losses["jepa"] = jnp.mean((z - z_target) ** 2)
        losses.update(frame=zero, audio=zero, caption=zero, proprio=zero, reward=zero, done=zero)
    elif stage == "warmup":
        rows = jax.random.permutation(jax.random.fold_in(key, 1), B * W)[
            : B * (1 + tcfg.frame_decodes)
        ]
        # Reward and termination follow a step: they belong to the latents after the first.
        zs = sg(z).reshape(B, W, -1)
        losses.update(
            head_losses(model, cfg, sg(z), flat, rows, background, fg_w),
            **task_losses(
                model,
                zs[:, 1:].reshape(B * (W - 1), -1),
                batch["reward"].reshape(-1),
                batch["done"].reshape(-1),
                reward_std,
                frame_seen[:, 1:].reshape(-1),
            ),
        )
    else:
        zs = z.reshape(B, W, -1)
        preds = rollout(model, zs, batch["action"], C)  # [B, W-1, D]
        err = (preds - z_target.reshape(B, W, -1)[:, 1:]) ** 2
        losses["jepa"] = jnp.mean(err)
        if cfg.keypoints:
            losses["keypoints"] = jnp.mean(err[..., cfg.keypoint_offset :])
        # Heads read the last grounded latent (a reconstruction) and every prediction; frames are
        # decoded for the reconstructions and a random subset of the predicted steps.
        lat = jnp.concatenate([zs[:, C - 1], preds.reshape(B * (W - 1), -1)])
        tgt = {
            k: jnp.concatenate([v[:, C - 1], v[:, 1:].reshape(B * (W - 1), *v.shape[2:])])
            for k, v in obs.items()
        }
        keys = jax.random.split(jax.random.fold_in(key, 1), B)
        pick = jax.vmap(lambda k: jax.random.permutation(k, W - 1)[: tcfg.frame_decodes])(keys)
        rows = jnp.concatenate(
            [jnp.arange(B), B + (jnp.arange(B)[:, None] * (W - 1) + pick).ravel()]
        )
        # Reward and termination are read from the encoded latents and from the predictions alike:
        # the planner scores imagined latents that start from an encoded one. A prediction grows
        # from the latent its rollout last read (step t for t < C, then step C - 1).
        reward, done = batch["reward"].reshape(-1), batch["done"].reshape(-1)
        source = jnp.minimum(jnp.arange(W - 1), C - 1)
        losses.update(
            head_losses(model, cfg, sg(lat), tgt, rows, background, fg_w),
            **task_losses(
                model,
                sg(
                    jnp.concatenate(
                        [zs[:, 1:].reshape(B * (W - 1), -1), preds.reshape(B * (W - 1), -1)]
                    )
                ),
                jnp.concatenate([reward, reward]),
                jnp.concatenate([done, done]),
                reward_std,
                jnp.concatenate([frame_seen[:, 1:].reshape(-1), frame_seen[:, source].reshape(-1)]),
            ),
        )
    assert set(losses) == set(tcfg.weights), (sorted(losses), sorted(tcfg.weights))
    scales = scales or {k: 1.0 for k in losses}
    total = sum(tcfg.weights[k] * scales[k] * v for k, v in losses.items())
    return total, {**losses, "effective_rank": jax.lax.stop_gradient(effective_rank(z))}
