"""Per-modality heads that decode a latent: frame, sound (log-mel), caption, reward and termination.

`HEADS` is the registry: adding a modality is adding one entry (a head and its loss in losses.py).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from worldmodel.config import ModelConfig
from worldmodel.encoders import grid_coords


class MLP(nnx.Module):
    def __init__(self, sizes: tuple[int, ...], *, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = jax.nn.gelu(layer(x))
        return self.layers[-1](x)


def depth_to_space(x: jax.Array, r: int = 2) -> jax.Array:
    """float[B, H, W, C*r*r] -> float[B, H*r, W*r, C] (pixel shuffle)."""
    B, H, W, C = x.shape
    c = C // (r * r)
    return x.reshape(B, H, W, r, r, c).transpose(0, 1, 3, 2, 4, 5).reshape(B, H * r, W * r, c)


def keypoint_maps(kp: jax.Array, n: int) -> jax.Array:
    """Keypoints float[B, K, 2] in [-1, 1] -> a Gaussian bump per keypoint on an n x n grid,
    float[B, n, n, K] (width one cell, so every resolution sees a smooth bump)."""
    c = grid_coords(n)
    sigma = 2.0 / n
    gx = jnp.exp(-((c[None, :, None] - kp[:, None, :, 0]) ** 2) / (2 * sigma**2))  # [B, n, K]
    gy = jnp.exp(-((c[None, :, None] - kp[:, None, :, 1]) ** 2) / (2 * sigma**2))
    return gy[:, :, None, :] * gx[:, None, :, :]


class FrameHead(nnx.Module):
    """z -> frame float[B, H, W, 3] in [0, 1]: z's spatial map, conditioned on its global part,
    upsampled by pixel shuffles (translation-equivariant: a ball's code draws it where it is).
    Keypoints, when z has them, are drawn as bumps added at every resolution."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.cfg = cfg
        chans = cfg.decoder_channels
        self.seed = nnx.Conv(cfg.spatial_channels, chans[0], (3, 3), rngs=rngs)
        self.seed_global = nnx.Linear(cfg.latent_dim, chans[0], rngs=rngs)
        outs = (*chans[1:], chans[-1])
        self.ups = nnx.List(
            [nnx.Conv(a, 4 * b, (3, 3), rngs=rngs) for a, b in zip(chans, outs, strict=True)]
        )
        self.out = nnx.Conv(chans[-1], 3, (3, 3), rngs=rngs)
        if cfg.keypoints:
            self.keypoint_in = nnx.List(
                [nnx.Conv(cfg.keypoints, c, (1, 1), rngs=rngs) for c in (*chans, chans[-1])]
            )
        # A learned full-resolution background (logits): the static scene costs the latent nothing,
        # and the upsampling path spends its capacity on what moves.
        self.background = nnx.Param(jnp.zeros((cfg.frame_size, cfg.frame_size, 3)))

    def __call__(self, z: jax.Array) -> jax.Array:
        cfg = self.cfg
        g, end = cfg.spatial_dim, cfg.keypoint_offset
        spatial = z[:, :g].reshape(-1, cfg.grid, cfg.grid, cfg.spatial_channels)
        x = self.seed(spatial) + self.seed_global(z[:, g:end])[:, None, None, :]
        kp = z[:, end:].reshape(z.shape[0], cfg.keypoints, 2)
        for i, up in enumerate(self.ups):
            if cfg.keypoints:
                x = x + self.keypoint_in[i](keypoint_maps(kp, x.shape[1]))
            x = depth_to_space(jax.nn.gelu(up(x)))
        if cfg.keypoints:
            x = x + self.keypoint_in[-1](keypoint_maps(kp, x.shape[1]))
        return jax.nn.sigmoid(self.out(x) + self.background[...])


class AudioHead(nnx.Module):
    """z -> log-mel float[B, mel_frames, n_mels] of the step's sound."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.shape = (cfg.mel_frames, cfg.n_mels)
        self.mlp = MLP((cfg.z_dim, 2 * cfg.z_dim, cfg.mel_frames * cfg.n_mels), rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.mlp(z).reshape(z.shape[0], *self.shape) * 4.0 - 5.0  # the encoder's scaling


class CaptionHead(nnx.Module):
    """z -> caption logits float[B, L, V], all positions at once (captions are short templates)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.shape = (cfg.caption_len, cfg.vocab_size)
        self.mlp = MLP((cfg.z_dim, 2 * cfg.z_dim, cfg.caption_len * cfg.vocab_size), rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.mlp(z).reshape(z.shape[0], *self.shape)


class ScalarHead(nnx.Module):
    """z -> float[B]: the reward, or the termination logit."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.mlp = MLP((cfg.z_dim, cfg.z_dim, 1), rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.mlp(z)[:, 0]


class ProprioHead(nnx.Module):
    """z -> float[B, proprio_dim]: the step's proprioception, in the dataset's normalised units."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.mlp = MLP((cfg.z_dim, cfg.z_dim, cfg.proprio_dim), rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.mlp(z)


HEADS = {
    "frame": FrameHead,
    "audio": AudioHead,
    "caption": CaptionHead,
    "proprio": ProprioHead,
    "reward": ScalarHead,
    "done": ScalarHead,
}


def head_names(cfg: ModelConfig) -> tuple[str, ...]:
    """The heads a model of `cfg` has: all of `HEADS`, the proprio head only when configured."""
    return tuple(n for n in HEADS if n != "proprio" or cfg.proprio_head)


def decode_caption(logits: jax.Array) -> jax.Array:
    """Tokens int32[..., L] from caption logits float[..., L, V]: the most likely well-formed
    caption (k words, <eos> at position k, <pad> after) under the head's per-position
    distributions. Position by position argmax can mix an empty caption with a sentence, e.g.
    "the cart moves <pad> slowly" where the direction is in doubt."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    L = logp.shape[-2]
    word = jnp.argmax(logp[..., 2:], axis=-1) + 2  # token 0 is <pad>, 1 is <eos>
    word_lp = jnp.max(logp[..., 2:], axis=-1)  # [..., L]
    pad_lp, eos_lp = logp[..., 0], logp[..., 1]
    before = jnp.cumsum(word_lp, axis=-1) - word_lp  # words at positions < k
    after = jnp.sum(pad_lp, axis=-1, keepdims=True) - jnp.cumsum(pad_lp, axis=-1)  # pads > k
    k = jnp.argmax(before + eos_lp + after, axis=-1)[..., None]  # where <eos> goes
    i = jnp.arange(L)
    return jnp.where(i < k, word, jnp.where(i == k, 1, 0)).astype(jnp.int32)
