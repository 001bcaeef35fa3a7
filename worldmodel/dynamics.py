"""Action-conditioned latent dynamics: a GRU carry that reads (z, action) and predicts the next z.

Recurrent on purpose: one cell per step is cheap at batch 1 (the viewer) and inside a batched
`lax.scan` (planning); a transformer re-reading its window measured 80x slower on a 2-core CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from worldmodel.config import ModelConfig


class Dynamics(nnx.Module):
    """carry (h float[B, hidden], z float[B, latent]) + action -> next carry with predicted z."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.cfg = cfg
        self.inp = nnx.Linear(cfg.z_dim + cfg.action_dim, cfg.hidden_dim, rngs=rngs)
        self.gru = nnx.GRUCell(cfg.hidden_dim, cfg.hidden_dim, rngs=rngs)
        self.pred1 = nnx.Linear(cfg.hidden_dim + cfg.z_dim, cfg.hidden_dim, rngs=rngs)
        self.pred2 = nnx.Linear(cfg.hidden_dim, cfg.z_dim, rngs=rngs)

    def initial(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """A carry that has seen only the latent `z` (no history yet)."""
        return jnp.zeros((z.shape[0], self.cfg.hidden_dim), z.dtype), z

    def __call__(self, carry: tuple[jax.Array, jax.Array], action: jax.Array):
        """One step: (h, z), action float[B, A] in [-1, 1] -> (h', predicted z')."""
        h, z = carry
        x = jax.nn.gelu(self.inp(jnp.concatenate([z, action], -1)))
        h, _ = self.gru(h, x)
        # Residual prediction: the next latent is the current one plus what the memory says changes.
        dz = self.pred2(jax.nn.gelu(self.pred1(jnp.concatenate([h, z], -1))))
        return h, z + dz
