"""Record rollouts of a world under a policy into the dataset contract, in several processes.

Episode i is seeded from (seed, i) alone, so the same seed gives byte-identical episodes whatever
the number of workers. Workers are spawned (not forked): MuJoCo's GL context and JAX do not survive
a fork.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from worldmodel.dataset import FORMAT_VERSION, META, DatasetError, write_episode, write_meta


@dataclass(frozen=True)
class RecordConfig:
    """What to record; `worldmodel record` fills it from its flags."""

    world: str | None = "balls"  # bundled world name (or None with `mjcf`)
    mjcf: str | None = None  # any MJCF file as a generic world
    episodes: int = 8  # number of episodes
    steps: int = 100  # control steps per episode (fewer if the world terminates)
    policy: str = "random"  # random | scripted
    workers: int = 1  # processes
    seed: int = 0  # base seed; episode i uses (seed, i)
    size: int = 64  # frame height and width in pixels


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode `index`, independent of how episodes are split across workers."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] % 2**63)


_WORLD: Any = None  # one world per worker process


def _make_world(cfg: RecordConfig):
    import sims

    name = cfg.world if cfg.mjcf is None else None
    return sims.make(name, mjcf=cfg.mjcf, size=cfg.size, max_steps=cfg.steps)


def _init_worker(cfg: RecordConfig) -> None:
    global _WORLD
    _WORLD = _make_world(cfg)


def rollout(world, policy_kind: str, seed: int, steps: int) -> dict[str, np.ndarray]:
    """One episode as contract arrays: T+1 observations, T actions (T <= steps)."""
    from sims.policies import make_policy

    obs, _ = world.reset(seed)
    policy = make_policy(policy_kind, world, np.random.default_rng([seed, 1]))
    observations = [obs]
    actions, rewards, terms, truncs = [], [], [], []
    for t in range(steps):
        action = policy(t)
        obs, reward, terminated, truncated, _ = world.step(action)
        truncated = truncated or (t == steps - 1 and not terminated)
        observations.append(obs)
        actions.append(np.clip(action, world.action_spec.low, world.action_spec.high))
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        if terminated or truncated:
            break
    captions = [o["caption"] for o in observations]
    width = max(1, max(len(c) for c in captions))
    return {
        "frame": np.stack([o["frame"] for o in observations]),
        "audio": np.stack([o["audio"] for o in observations]).astype(np.float32),
        "caption_tokens": np.stack([o["caption_tokens"] for o in observations]).astype(np.int32),
        "caption": np.array(captions, dtype=f"<U{width}"),
        "proprio": np.stack([o["proprio"] for o in observations]).astype(np.float32),
        "state": np.stack([o["state"] for o in observations]).astype(np.float32),
        "action": np.stack(actions).astype(np.float32),
        "reward": np.array(rewards, dtype=np.float32),
        "terminated": np.array(terms, dtype=bool),
        "truncated": np.array(truncs, dtype=bool),
    }


def _record_one(job: tuple[int, int, str, str, int]) -> dict:
    index, seed, policy, out, steps = job
    arrays = rollout(_WORLD, policy, seed, steps)
    entry = write_episode(out, f"{index:06d}", arrays)
    return {**entry, "seed": seed}


def record(cfg: RecordConfig, out: str | os.PathLike, progress: bool = True) -> dict[str, Any]:
    """Record `cfg.episodes` episodes into the dataset folder `out`; returns its `dataset.json`."""
    out = Path(out)
    if (out / META).exists():
        raise DatasetError(
            f"{out / META}: already exists; record into a new folder or remove it first"
        )
    if cfg.episodes < 1 or cfg.steps < 1 or cfg.workers < 1:
        raise ValueError(f"episodes, steps and workers must be at least 1, got {cfg}")
    world = _make_world(cfg)  # fail early, in this process, with a clear error
    describe = world.describe()
    world.close()
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (i, episode_seed(cfg.seed, i), cfg.policy, str(out), cfg.steps) for i in range(cfg.episodes)
    ]
    entries: list[dict] = []
    bar = tqdm(
        total=cfg.episodes, desc=f"record {describe['world']}", unit="ep", disable=not progress
    )
    if cfg.workers == 1:
        _init_worker(cfg)
        for job in jobs:
            entries.append(_record_one(job))
            bar.update()
    else:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(
            cfg.workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg,)
        ) as pool:
            for entry in pool.map(_record_one, jobs):
                entries.append(entry)
                bar.update()
    bar.close()
    meta = {
        "format_version": FORMAT_VERSION,
        **describe,
        "recording": asdict(cfg),
        "episodes": sorted(entries, key=lambda e: e["id"]),
    }
    write_meta(out, meta)
    return meta
