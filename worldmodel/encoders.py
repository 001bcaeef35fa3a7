"""The unified encoder: per-modality tokenisers, modality and position embeddings, delimiter
tokens, and one shared transformer over all tokens of a step that fuses them into `z`.

`z` has two parts. Its spatial part is a small map on the frame stem's grid (where things are):
read straight from the stem when the frame is present, and otherwise predicted by the backbone's
frame-position tokens from whatever is present. Its global part is pooled by a summary token
(what is heard, said, and how things move). A flat latent pooled by one token learned the balls'
positions only after a long plateau at the mean frame; the map makes the layout cheap to learn
and translation-equivariant to decode. Optional keypoints (`cfg.keypoints`) end z: the (x, y) of
each channel's spatial-softmax peak on the stem's finer map (Finn et al. 2016's deep spatial
autoencoder), which locate a small object to a fraction of a pixel where a map cell is 8 pixels.

Any non-empty subset of modalities may be present: absent ones are replaced by a learned mask
token and masked out of attention, so `z` can be inferred from frames alone, sound alone or a
caption alone.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from worldmodel.audio import log_mel
from worldmodel.config import MODALITIES, ModelConfig


class Block(nnx.Module):
    """Pre-norm transformer block; returns its attention weights for the viewer's attention map."""

    def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs) -> None:
        self.heads = heads
        self.norm1 = nnx.LayerNorm(width, rngs=rngs)
        self.qkv = nnx.Linear(width, 3 * width, rngs=rngs)
        self.proj = nnx.Linear(width, width, rngs=rngs)
        self.norm2 = nnx.LayerNorm(width, rngs=rngs)
        self.mlp1 = nnx.Linear(width, 4 * width, rngs=rngs)
        self.mlp2 = nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, x: jax.Array, key_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x: float[B, N, W]; key_mask: bool[B, N] (False = absent) -> (x', attn [B, H, N, N])."""
        B, N, W = x.shape
        q, k, v = jnp.split(self.qkv(self.norm1(x)), 3, axis=-1)
        q, k, v = (t.reshape(B, N, self.heads, W // self.heads) for t in (q, k, v))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(W // self.heads)
        logits = jnp.where(key_mask[:, None, None, :], logits, -1e9)
        attn = jax.nn.softmax(logits, axis=-1)
        x = x + self.proj(jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(B, N, W))
        x = x + self.mlp2(jax.nn.gelu(self.mlp1(self.norm2(x))))
        return x, attn


def grid_coords(n: int) -> jax.Array:
    """Centres of n cells spanning [-1, 1] (keypoint coordinates use this convention)."""
    return (jnp.arange(n) + 0.5) * (2.0 / n) - 1.0


def soft_argmax(logits: jax.Array, sharpness: jax.Array | None = None) -> jax.Array:
    """float[B, H, W, K] -> each channel's expected (x, y) under its spatial softmax, [B, K, 2].
    With `sharpness`, each channel's logits are first standardised over the map and scaled by it,
    so a peak stands out from the start of training whatever the conv's scale."""
    B, H, W, K = logits.shape
    flat = logits.reshape(B, H * W, K)
    if sharpness is not None:
        mu, sd = flat.mean(1, keepdims=True), flat.std(1, keepdims=True)
        flat = (flat - mu) / (sd + 1e-6) * sharpness
    p = jax.nn.softmax(flat, axis=1).reshape(B, H, W, K)
    x = jnp.einsum("bhwk,w->bk", p, grid_coords(W))
    y = jnp.einsum("bhwk,h->bk", p, grid_coords(H))
    return jnp.stack([x, y], -1)


def with_prev_frames(obs: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Observation sequences [B, T, ...] -> the same with "prev_frame": each step's previous frame
    (the first step's own, so it shows no motion), for a model with `cfg.motion`."""
    f = obs["frame"]
    return {**obs, "prev_frame": jnp.concatenate([f[:, :1], f[:, :-1]], axis=1)}


def token_counts(cfg: ModelConfig) -> dict[str, int]:
    """Tokens per modality (delimiter excluded), in backbone order."""
    grid = cfg.grid // 2
    return {"frame": grid * grid, "audio": cfg.mel_frames, "caption": cfg.caption_len, "proprio": 1}


def token_labels(cfg: ModelConfig) -> list[str]:
    """The modality of each backbone token ("summary", then "<m>:delim" and "<m>" per modality)."""
    labels = ["summary"]
    for m, n in token_counts(cfg).items():
        labels += [f"{m}:delim"] + [m] * n
    return labels


class Encoder(nnx.Module):
    """obs (any subset of modalities) -> z float[B, z_dim] (spatial map, then global part)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.cfg = cfg
        W = cfg.width
        chans = (6 if cfg.motion else 3, *cfg.stem)
        self.stem = nnx.List(
            [nnx.Conv(a, b, (4, 4), strides=2, rngs=rngs) for a, b in itertools.pairwise(chans)]
        )
        self.patch = nnx.Linear(4 * chans[-1], W, rngs=rngs)
        self.audio_in = nnx.Linear(cfg.n_mels, W, rngs=rngs)
        self.caption_in = nnx.Embed(cfg.vocab_size, W, rngs=rngs)
        self.proprio_in = nnx.Linear(cfg.proprio_dim, W, rngs=rngs)
        init = nnx.initializers.normal(0.02)
        counts = token_counts(cfg)
        self.modality = nnx.Param(init(rngs.params(), (len(MODALITIES), W)))
        self.delimiter = nnx.Param(init(rngs.params(), (len(MODALITIES), W)))
        self.summary = nnx.Param(init(rngs.params(), (1, W)))
        self.masked = nnx.Param(init(rngs.params(), (len(MODALITIES), W)))  # absent modality
        self.position = nnx.Param(init(rngs.params(), (sum(counts.values()), W)))
        self.blocks = nnx.List([Block(W, cfg.heads, rngs=rngs) for _ in range(cfg.depth)])
        self.out_norm = nnx.LayerNorm(W, rngs=rngs)
        self.out = nnx.Linear(W, cfg.latent_dim, rngs=rngs)
        k = cfg.spatial_channels
        self.spatial_in = nnx.Conv(chans[-1], k, (1, 1), rngs=rngs)  # from the stem
        self.spatial_out = nnx.Linear(W, 4 * k, rngs=rngs)  # from a frame token (2x2 cells)
        if cfg.keypoints:  # from the stem's second-last map; guessed by the summary without a frame
            self.keypoint_in = nnx.Conv(chans[-2], cfg.keypoints, (3, 3), rngs=rngs)
            self.keypoint_out = nnx.Linear(W, 2 * cfg.keypoints, rngs=rngs)
            # Standardised logits times 4: a 3-sigma cell outweighs the map's other 255 cells.
            self.keypoint_sharpness = nnx.Param(jnp.full((cfg.keypoints,), 4.0, jnp.float32))

    def tokens(self, obs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Per-modality tokens float[B, n_m, W] before embeddings are added, and "spatial": the
        frame's map float[B, g, g, k] for z (and "keypoints" float[B, K, 2] when configured)."""
        cfg = self.cfg
        x = obs["frame"].astype(jnp.float32) / 255.0
        if cfg.motion:
            prev = obs.get("prev_frame", obs["frame"]).astype(jnp.float32) / 255.0
            x = jnp.concatenate([x, x - prev], -1)
        extra = {}
        for i, conv in enumerate(self.stem):
            if cfg.keypoints and i == len(self.stem) - 1:
                extra["keypoints"] = soft_argmax(self.keypoint_in(x), self.keypoint_sharpness[...])
            x = jax.nn.gelu(conv(x))
        spatial = self.spatial_in(x)
        B, H, Wd, C = x.shape  # 2x2 patches of the stem's output
        x = x.reshape(B, H // 2, 2, Wd // 2, 2, C).transpose(0, 1, 3, 2, 4, 5)
        frame = self.patch(x.reshape(B, (H // 2) * (Wd // 2), 4 * C))
        mel = log_mel(obs["audio"], cfg.n_mels, cfg.mel_frames)
        return {
            "frame": frame,
            "audio": self.audio_in((mel + 5.0) / 4.0),  # log-mel of these worlds spans about -11..3
            "caption": self.caption_in(obs["caption_tokens"]),
            "proprio": self.proprio_in(obs["proprio"])[:, None, :],
            "spatial": spatial,  # z's spatial map read from the stem (not a token)
            **extra,
        }

    def __call__(
        self, obs: dict[str, jax.Array], present: jax.Array, return_attention: bool = False
    ):
        """obs: frame uint8[B,H,W,3], audio float[B,S], caption_tokens int[B,L], proprio float[B,P]
        (and, with `cfg.motion`, optionally prev_frame uint8[B,H,W,3]); present: bool[B, 4] in
        MODALITIES order -> z float[B, z_dim] (and attention maps)."""
        toks = self.tokens(obs)
        B = present.shape[0]
        seq = [jnp.broadcast_to(self.summary[...], (B, 1, self.cfg.width))]
        mask = [jnp.ones((B, 1), bool)]
        pos = 0
        for i, m in enumerate(MODALITIES):
            t = toks[m]
            n = t.shape[1]
            t = jnp.where(present[:, i, None, None], t, self.masked[i])
            t = t + self.modality[i] + self.position[pos : pos + n]
            pos += n
            delim = jnp.broadcast_to(self.delimiter[i] + self.modality[i], (B, 1, self.cfg.width))
            seq += [delim, t]
            mask.append(jnp.repeat(present[:, i : i + 1], n + 1, axis=1))
        x = jnp.concatenate(seq, axis=1)
        key_mask = jnp.concatenate(mask, axis=1)
        attns = []
        for block in self.blocks:
            x, attn = block(x, key_mask)
            attns.append(attn)
        x = self.out_norm(x)
        n_frame = token_counts(self.cfg)["frame"]
        g, k = self.cfg.grid, self.cfg.spatial_channels
        guess = self.spatial_out(x[:, 2 : 2 + n_frame])  # after the summary and frame delimiter
        guess = guess.reshape(B, g // 2, g // 2, 2, 2, k).transpose(0, 1, 3, 2, 4, 5)
        guess = guess.reshape(B, g, g, k)
        spatial = jnp.where(present[:, 0, None, None, None], toks["spatial"], guess)
        parts = [spatial.reshape(B, -1), self.out(x[:, 0])]
        if self.cfg.keypoints:
            guess_kp = jnp.tanh(self.keypoint_out(x[:, 0]))
            kp = toks["keypoints"].reshape(B, -1)
            parts.append(jnp.where(present[:, 0, None], kp, guess_kp))
        z = jnp.concatenate(parts, axis=-1)
        return (z, jnp.stack(attns, 1)) if return_attention else z
