"""Training windows from a recorded dataset: episodes in memory, windows sampled by (seed, step).

Sampling depends only on (seed, step), so a resumed run sees exactly the batches an uninterrupted
one would. Episode i belongs to data shard i % shards; a process loads only the shards it owns (its
share in multi-host training) and a batch is one equal slice per shard in shard order, so the global
batch is the same however shards are spread over processes. Proprioception is standardised with
training-set statistics; actions are scaled to [-1, 1]. The reward's spread is kept too: the reward
loss is measured in its units (a reward of std 0.07 would otherwise weigh nothing next to frames).
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
    reward_std: float = 1.0  # checkpoints from before it was kept: 1

    @classmethod
    def fit(
        cls, stats: np.ndarray, action: dict[str, Any], reward: np.ndarray | None = None
    ) -> Normalizer:
        """From per-shard (count, sum, sum of squares) rows of proprio (and reward), added in shard
        order."""

        def moments(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n, s, ss = rows.sum(0)
            mean = s / np.maximum(n, 1)
            return mean, np.sqrt(np.maximum(ss / np.maximum(n, 1) - mean**2, 0.0))

        mean, std = moments(stats)
        r_std = 1.0 if reward is None else float(max(moments(reward)[1][0], 1e-3))
        return cls(
            mean.tolist(),
            np.maximum(std, 1e-3).tolist(),
            list(action["low"]),
            list(action["high"]),
            r_std,
        )

    def proprio(self, x: np.ndarray) -> np.ndarray:
        return ((x - np.asarray(self.proprio_mean)) / np.asarray(self.proprio_std)).astype(
            np.float32
        )

    def proprio_world(self, x):
        """The inverse of `proprio`: standardised proprio (numpy or jax) -> world units."""
        std = np.asarray(self.proprio_std, np.float32)
        return x * std + np.asarray(self.proprio_mean, np.float32)

    def action(self, a: np.ndarray) -> np.ndarray:
        lo, hi = np.asarray(self.action_low), np.asarray(self.action_high)
        return (2.0 * (a - lo) / (hi - lo) - 1.0).astype(np.float32)


def background_of(per_shard: np.ndarray) -> np.ndarray:
    """uint8[H, W, 3]: the median over shards of per-shard background estimates."""
    return np.median(per_shard, 0).round().astype(np.uint8)


class Windows:
    """The owned episodes of a dataset in memory, cut into windows of `window` observations."""

    def __init__(
        self,
        folder: str | os.PathLike,
        window: int,
        norm: Normalizer | None = None,
        shards: int = 1,
        owned: tuple[int, ...] | None = None,
    ) -> None:
        self.meta: dict[str, Any] = read_meta(folder)
        self.shards = shards
        self.owned = tuple(range(shards)) if owned is None else tuple(owned)
        keep = [i % shards in self.owned for i in range(len(self.meta["episodes"]))]
        self.episodes = list(iter_episodes(folder, keep=keep))
        self.shard_of = [i % shards for i, k in enumerate(keep) if k]
        self.window = window
        self.long: list[dict[str, np.ndarray]] = []
        self.starts: dict[int, list[tuple[int, int]]] = {k: [] for k in self.owned}
        for ep, k in zip(self.episodes, self.shard_of, strict=True):
            if len(ep["action"]) + 1 >= window:
                e = len(self.long)
                self.long.append(ep)
                # Every step of every long-enough episode is equally likely to start a window.
                self.starts[k] += [(e, s) for s in range(len(ep["action"]) + 2 - window)]
        for k, starts in self.starts.items():
            if not starts:
                raise DatasetError(
                    f"{folder}: no episode{f' of data shard {k}' if shards > 1 else ''} has "
                    f"{window} observations (context + horizon); record longer episodes or "
                    f"lower --context/--horizon"
                )
        self.norm = norm or Normalizer.fit(
            self.moment_stats("proprio"), self.meta["action"], self.moment_stats("reward")
        )

    @property
    def all_starts(self) -> list[tuple[int, int]]:
        return [s for k in self.owned for s in self.starts[k]]

    def backgrounds(self, frames: int = 1000, seed: int = 0) -> np.ndarray:
        """Per shard, the scene without what moves: the per-pixel median of sampled frames,
        float32[shards, H, W, 3]; zero rows for shards not owned here (processes add theirs up).
        `background_of` takes the median over shards, so every layout agrees."""
        H, W, C = self.meta["frame_shape"]
        out = np.zeros((self.shards, H, W, C), np.float32)
        for k in self.owned:
            eps = [ep for ep, s in zip(self.episodes, self.shard_of, strict=True) if s == k]
            rng = np.random.default_rng([seed, k])
            picks = []
            for _ in range(frames):
                ep = eps[int(rng.integers(len(eps)))]
                picks.append(ep["frame"][int(rng.integers(len(ep["frame"])))])
            out[k] = np.median(np.stack(picks), 0)
        return out

    def moment_stats(self, field: str) -> np.ndarray:
        """float64[shards, 3, F]: per shard (count, sum, sum of squares) of a per-step field
        (`proprio`, or `reward` with F = 1); zero rows for shards not owned here (processes add
        theirs up, and each row is filled exactly once)."""
        F = int(np.prod(self.episodes[0][field].shape[1:]))
        stats = np.zeros((self.shards, 3, F))
        for ep, k in zip(self.episodes, self.shard_of, strict=True):
            x = ep[field].astype(np.float64).reshape(-1, F)
            stats[k] += np.stack([np.full(F, float(len(x))), x.sum(0), (x**2).sum(0)])
        return stats

    def batch(self, seed: int, step: int, size: int) -> dict[str, np.ndarray]:
        """This process's part of the global batch of `size` windows (size / shards per owned
        shard): obs [b, W, ...], action [b, W-1, A], reward and done [b, W-1]."""
        per = size // self.shards
        where: list[tuple[int, int]] = []
        for k in self.owned:
            rng = np.random.default_rng([seed, step, k])
            starts = self.starts[k]
            where += [starts[i] for i in rng.integers(len(starts), size=per)]
        return self.stack(where)

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
