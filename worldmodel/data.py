"""Training windows from a recorded dataset: episodes in memory, windows sampled by (seed, step).

Sampling depends only on (seed, step), so a resumed run sees exactly the batches an uninterrupted
one would. Proprioception is standardised with training-set statistics; actions are scaled to
[-1, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodel.dataset import DatasetError, iter_episodes, read_meta

OBS = ("frame", "audio", "caption_tokens", "proprio")


@dataclass
class Normalizer:
    """Feature scaling that travels with a checkpoint."""

    proprio_mean: list[float]
    proprio_std: list[float]
    action_low: list[float]
    action_high: list[float]

    def proprio(self, x: np.ndarray) -> np.ndarray:
        return ((x - np.asarray(self.proprio_mean)) / np.asarray(self.proprio_std)).astype(
            np.float32
        )

    def action(self, a: np.ndarray) -> np.ndarray:
        lo, hi = np.asarray(self.action_low), np.asarray(self.action_high)
        return (2.0 * (a - lo) / (hi - lo) - 1.0).astype(np.float32)


class Windows:
    """All episodes of a dataset in memory, cut into windows of `window` observations."""

    def __init__(
        self,
        folder: str | os.PathLike,
        window: int,
        norm: Normalizer | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.meta: dict[str, Any] = read_meta(folder)
        index, count = shard  # this process's share of the episodes, for multi-host training
        self.episodes = [ep for i, ep in enumerate(iter_episodes(folder)) if i % count == index]
        self.window = window
        long = [ep for ep in self.episodes if len(ep["action"]) + 1 >= window]
        if not long:
            raise DatasetError(
                f"{folder}: no episode has {window} observations (context + horizon); record "
                f"longer episodes or lower --context/--horizon"
            )
        self.long = long
        if norm is None:
            p = np.concatenate([ep["proprio"] for ep in self.episodes])
            spec = self.meta["action"]
            norm = Normalizer(
                p.mean(0).tolist(),
                np.maximum(p.std(0), 1e-3).tolist(),
                list(spec["low"]),
                list(spec["high"]),
            )
        self.norm = norm
        # Window starts, weighted so every step of every long-enough episode is equally likely.
        self.starts = [
            (e, s) for e, ep in enumerate(long) for s in range(len(ep["action"]) + 2 - window)
        ]

    def batch(self, seed: int, step: int, size: int) -> dict[str, np.ndarray]:
        """A batch of windows: obs [B, W, ...], action [B, W-1, A], reward/done [B, W-1]."""
        rng = np.random.default_rng([seed, step])
        picks = rng.integers(len(self.starts), size=size)
        return self.stack([self.starts[i] for i in picks])

    def stack(self, where: list[tuple[int, int]]) -> dict[str, np.ndarray]:
        W = self.window
        out: dict[str, list] = {k: [] for k in (*OBS, "state", "action", "reward", "done")}
        for e, s in where:
            ep = self.long[e]
            for k in (*OBS, "state"):
                out[k].append(ep[k][s : s + W])
            out["action"].append(ep["action"][s : s + W - 1])
            out["reward"].append(ep["reward"][s : s + W - 1])
            out["done"].append(ep["terminated"][s : s + W - 1])
        batch = {k: np.stack(v) for k, v in out.items()}
        batch["proprio"] = self.norm.proprio(batch["proprio"])
        batch["action"] = self.norm.action(batch["action"])
        batch["done"] = batch["done"].astype(np.float32)
        return batch
