"""Fast inference on a trained model for the viewer, the planner and the imagined environment.

The NNX model is split once; every hot function is a `jax.jit` over (params, ...) so a step of the
imagined world at batch 1 costs one small compiled call. The carry is (h, z): the dynamics' memory
and the current latent. Grounding replaces z with the encoding of a real observation; imagining
replaces it with the dynamics' prediction.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sims.captions import Vocabulary
from worldmodel.audio import griffin_lim
from worldmodel.checkpoint import Loaded
from worldmodel.heads import decode_caption

Carry = tuple[jax.Array, jax.Array]


class Imaginer:
    """A trained world model as verbs on numpy observations: encode, ground, step, decode."""

    def __init__(self, loaded: Loaded, griffin_lim_iters: int = 12) -> None:
        self.loaded = loaded
        self.cfg = loaded.cfg
        self.params = loaded.params
        self.vocab = Vocabulary(loaded.config["vocab"])
        g = loaded.graphdef
        S = self.cfg.samples_per_step

        def encode(params, obs, present):
            return nnx.merge(g, params).encoder(obs, present, return_attention=True)

        def step(params, carry, action):
            return nnx.merge(g, params).dynamics(carry, action)

        def recall(params, zs, actions):
            model = nnx.merge(g, params)
            carry = model.dynamics.initial(zs[:, 0])

            def body(carry, inp):
                z, a = inp
                h, _ = model.dynamics(carry, a)
                return (h, z), None

            xs = (jnp.swapaxes(zs[:, 1:], 0, 1), jnp.swapaxes(actions, 0, 1))
            return jax.lax.scan(body, carry, xs)[0]

        def decode(params, z):
            out = nnx.merge(g, params).decode(z, ("frame", "audio", "caption", "reward", "done"))
            frame = jnp.round(out["frame"] * 255.0).astype(jnp.uint8)
            # Clip to the range real sound spans, so an untrained or drifting dream stays finite.
            mel = jnp.clip(out["audio"], -12.0, 4.0)
            wave = jax.vmap(lambda m: griffin_lim(m, S, griffin_lim_iters))(mel)
            tokens = decode_caption(out["caption"])
            return frame, out["audio"], wave, tokens, out["reward"], jax.nn.sigmoid(out["done"])

        self._encode = jax.jit(encode)
        self._step = jax.jit(step)
        self._recall = jax.jit(recall)
        self._decode = jax.jit(decode)

    # --- numpy in, numpy out ---------------------------------------------------------------------
    def batch_obs(
        self, observations: list[dict[str, Any]], previous: list[dict[str, Any]] | None = None
    ) -> dict[str, jax.Array]:
        """World observations (as `sims` returns them) -> model inputs with a leading batch axis.
        `previous` are the observations one step before (a motion model sees the frame
        difference; without them it sees none)."""
        norm = self.loaded.norm
        obs = {
            "frame": jnp.asarray(np.stack([o["frame"] for o in observations])),
            "audio": jnp.asarray(np.stack([o["audio"] for o in observations]), jnp.float32),
            "caption_tokens": jnp.asarray(np.stack([o["caption_tokens"] for o in observations])),
            "proprio": jnp.asarray(norm.proprio(np.stack([o["proprio"] for o in observations]))),
        }
        if self.cfg.motion:
            before = observations if previous is None else previous
            obs["prev_frame"] = jnp.asarray(np.stack([o["frame"] for o in before]))
        return obs

    def action(self, action: np.ndarray) -> jax.Array:
        """A world action (its own units) -> the model's [-1, 1] scale, float[B, A]."""
        return jnp.asarray(self.loaded.norm.action(np.atleast_2d(np.asarray(action))))

    def encode(
        self,
        observations: list[dict[str, Any]],
        present: np.ndarray | None = None,
        previous: list[dict[str, Any]] | None = None,
    ):
        """-> (z float[B, D], attention float[B, depth, heads, N, N]); `previous` as in
        `batch_obs`."""
        obs = self.batch_obs(observations, previous)
        B = obs["frame"].shape[0]
        mask = jnp.ones((B, 4), bool) if present is None else jnp.asarray(present, bool)
        return self._encode(self.params, obs, mask)

    def initial(self, z: jax.Array) -> Carry:
        """A carry that has just seen `z` (no memory yet)."""
        return jnp.zeros((z.shape[0], self.cfg.hidden_dim), z.dtype), z

    def ground(self, carry: Carry, z: jax.Array) -> Carry:
        """Keep the memory, replace the latent by an observed one (the viewer's re-grounding)."""
        return carry[0], z

    def recall(self, zs: jax.Array, actions: jax.Array) -> Carry:
        """A carry rebuilt from a window of observed latents zs float[B, W, D] and the model-scale
        actions float[B, W - 1, A] between them, grounded at every step, as training grounds
        its context; its latent is the last of `zs`. The planner's `--memory N` bounds its
        memory this way (the reacher planned the same with and without)."""
        return self._recall(self.params, zs, actions)

    def step(self, carry: Carry, action: np.ndarray) -> Carry:
        """One imagined step under a world action."""
        return self._step(self.params, carry, self.action(action))

    def keypoints(self, z: jax.Array) -> np.ndarray:
        """The keypoints a latent holds, float[B, K, 2] as (x, y) in [-1, 1] across the frame
        (left to right, top to bottom); K is 0 for a model without them."""
        kp = np.asarray(z)[:, self.cfg.keypoint_offset :]
        return kp.reshape(len(kp), self.cfg.keypoints, 2)

    def decode(self, z: jax.Array) -> list[dict[str, Any]]:
        """Latents float[B, D] -> per item: frame uint8[H,W,3], audio float32[S], log-mel,
        caption text and tokens, reward, done probability."""
        frame, mel, wave, tokens, reward, done = (
            np.asarray(x) for x in self._decode(self.params, z)
        )
        return [
            {
                "frame": frame[i],
                "audio": wave[i].astype(np.float32),
                "logmel": mel[i],
                "caption_tokens": tokens[i],
                "caption": self.vocab.decode(tokens[i]),
                "reward": float(reward[i]),
                "done": float(done[i]),
            }
            for i in range(len(frame))
        ]
