"""Training: a `jax.jit` step on split NNX state with donated buffers, the staged schedule, Orbax
checkpoints (atomic, keep N, automatic resume), metrics as JSONL and a progress bar.

`worldmodel train --data DIR --out RUN --preset tiny` runs `train()`; the run folder holds
`config.json`, `metrics.jsonl` and `ckpt/<step>/`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm import tqdm

from worldmodel.config import ModelConfig, TrainConfig
from worldmodel.data import Normalizer, Windows, background_of
from worldmodel.losses import FROZEN, STAGES, loss_fn
from worldmodel.model import new_model, run_once

MAX_BAD_STEPS = 5  # consecutive non-finite updates before training stops


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite losses, a checkpoint that does not fit the data)."""


def stage_at(step: int, tcfg: TrainConfig) -> str:
    """The schedule's stage at `step`."""
    a, b = (int(f * tcfg.steps) for f in tcfg.stages)
    return STAGES[0] if step < a else STAGES[1] if step < b else STAGES[2]


def model_config_for(meta: dict[str, Any], base: ModelConfig) -> ModelConfig:
    """Fill a model config's data shapes from a dataset's `dataset.json`."""
    H, W, _ = meta["frame_shape"]
    if H != W:
        raise TrainingError(f"frames must be square, the dataset has {H}x{W}")
    return dataclasses.replace(
        base,
        frame_size=H,
        samples_per_step=meta["audio"]["samples_per_step"],
        vocab_size=len(meta["caption"]["vocab"]),
        caption_len=meta["caption"]["max_tokens"],
        proprio_dim=len(meta["proprio_names"]),
        action_dim=len(meta["action"]["names"]),
    )


def optimizer(tcfg: TrainConfig) -> optax.GradientTransformation:
    sched = optax.warmup_cosine_decay_schedule(
        0.0, tcfg.lr, tcfg.warmup, max(tcfg.steps, tcfg.warmup + 1)
    )

    # The reward and termination heads are small read-outs of features that move as the encoder
    # learns; at the shared rate they lagged far behind a read-out fit afterwards (reacher reward
    # R^2 0.47 against 0.91), so their steps are scaled up.
    def task_heads(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: (
                [str(getattr(p, "key", p)) for p in path[:2]]
                in (["heads", "reward"], ["heads", "done"])
            ),
            params,
        )

    # Skip a non-finite update instead of poisoning the parameters; the loop stops after several.
    # The finite check, clipping and AdamW see the parameters as one flat vector: elementwise
    # the same, but one set of ops instead of one per parameter array (per array, the optimiser
    # took 9.6 s of a micro model's 22 s step compile on a 2-core CPU).
    adamw = optax.chain(optax.clip_by_global_norm(tcfg.clip), optax.adamw(sched, weight_decay=1e-4))
    return optax.chain(
        optax.flatten(optax.apply_if_finite(adamw, max_consecutive_errors=10**9)),
        optax.masked(optax.scale(tcfg.task_head_lr), task_heads),
    )


def skipped_updates(opt) -> jax.Array:
    """How many updates in a row the optimiser has skipped as non-finite."""
    return optax.tree_utils.tree_get(opt, "notfinite_count")


def _freeze(grads, frozen: tuple[str, ...]):
    return jax.tree_util.tree_map_with_path(
        lambda path, g: jnp.zeros_like(g) if str(path[0].key) in frozen else g, grads
    )


def make_step(
    graphdef: nnx.GraphDef,
    tcfg: TrainConfig,
    tx: optax.GradientTransformation,
    stage: str,
    background: np.ndarray | None = None,
    reward_std: float = 1.0,
):
    """A jitted step for one stage: (state, batch, key) -> (state, metrics); state is donated."""

    bg = None if background is None else jnp.asarray(background)

    def step(state: dict, batch: dict[str, jax.Array], key: jax.Array):
        target = nnx.merge(graphdef, state["ema"])
        scales = (
            {k: 1.0 / jnp.maximum(v, 1e-3) for k, v in state["balance"].items()}
            if tcfg.grad_balance
            else None
        )

        def objective(params):
            model = nnx.merge(graphdef, params)
            return loss_fn(model, target, batch, key, tcfg, stage, scales, bg, reward_std)

        (total, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
        grads = _freeze(grads, FROZEN[stage])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        ema = jax.tree.map(lambda e, p: tcfg.ema * e + (1 - tcfg.ema) * p, state["ema"], params)
        balance = {
            k: 0.99 * v + 0.01 * jax.lax.stop_gradient(metrics[k])
            for k, v in state["balance"].items()
        }
        new = {
            "params": params,
            "ema": ema,
            "opt": opt,
            "balance": balance,
            "step": state["step"] + 1,
        }
        return new, {"loss": total, **metrics, "skipped": skipped_updates(opt)}

    return jax.jit(step, donate_argnums=0)


def init_state(
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    tx: optax.GradientTransformation,
    background: np.ndarray | None = None,
):
    """(graphdef, state) with fresh parameters from `tcfg.seed`; the frame head's background
    starts as the dataset's median frame when given (Adam would take thousands of steps to move
    its logits from grey to a dark floor, and the decoder would spend itself painting it)."""
    model = new_model(mcfg, tcfg.seed)
    if background is not None:
        p = np.clip(background.astype(np.float32) / 255.0, 0.02, 0.98)
        model.heads["frame"].background[...] = jnp.asarray(np.log(p / (1 - p)))
    graphdef, params = nnx.split(model, nnx.Param)

    def rest(params):
        return {
            "params": params,
            "ema": jax.tree.map(jnp.copy, params),
            "opt": tx.init(params),
            "balance": {k: jnp.ones(()) for k in tcfg.weights},
            "step": jnp.zeros((), jnp.int32),
        }

    state = run_once(rest, params)
    return graphdef, state


def _checkpointer(run: Path, tcfg: TrainConfig) -> ocp.CheckpointManager:
    opts = ocp.CheckpointManagerOptions(max_to_keep=tcfg.keep, create=True)
    return ocp.CheckpointManager(
        (run / "ckpt").absolute(), options=opts, item_handlers=ocp.StandardCheckpointHandler()
    )


def _to_saveable(state: dict) -> dict:
    return {
        **state,
        "params": nnx.to_pure_dict(state["params"]),
        "ema": nnx.to_pure_dict(state["ema"]),
    }


def restore(run: Path, graphdef, state: dict, tcfg: TrainConfig, step: int | None = None) -> dict:
    """The run's latest (or given) checkpoint, restored into the structure of `state`."""
    mgr = _checkpointer(run, tcfg)
    step = mgr.latest_step() if step is None else step
    saveable = _to_saveable(state)
    # The gradient-balancing means are keyed by loss name, and losses are added over versions
    # ("keypoints", "proprio"): restore the names the run saved, then start new ones at 1.
    meta = mgr.item_metadata(step) if step is not None else None
    if meta is not None and "balance" in meta:
        saveable["balance"] = {k: jnp.ones(()) for k in meta["balance"]}
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, saveable)
    try:
        raw = mgr.restore(step, args=ocp.args.StandardRestore(abstract))
        raw["balance"] = {k: raw["balance"].get(k, jnp.ones(())) for k in state["balance"]}
    except ValueError as e:
        why = str(e).splitlines()[0].rstrip(":")
        raise TrainingError(
            f"{run / 'ckpt' / str(step)}: this checkpoint's training state does not match the "
            f"model and optimiser this version builds ({why}); train into a new --out, or "
            f"remove {run / 'ckpt'} to start this run over"
        ) from None
    finally:
        mgr.close()
    out = {**raw}
    for k in ("params", "ema"):
        s = jax.tree.map(lambda x: x, state[k])
        nnx.replace_by_pure_dict(s, raw[k])
        out[k] = s
    return out


def _write_config(
    run: Path, mcfg: ModelConfig, tcfg: TrainConfig, norm: Normalizer, meta: dict, data: str
) -> None:
    cfg = {
        "model": dataclasses.asdict(mcfg),
        "train": dataclasses.asdict(tcfg),
        "normalizer": dataclasses.asdict(norm),
        "data": str(data),
        "world": meta["world"],
        "vocab": meta["caption"]["vocab"],
        "action": meta["action"],
        "proprio_names": meta["proprio_names"],
        "state_names": meta["state_names"],
    }
    cfg = json.loads(json.dumps(cfg))  # tuples become lists, as they will be when read back
    path = run / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old["model"] != cfg["model"] or old["vocab"] != cfg["vocab"]:
            raise TrainingError(
                f"{path}: this run was trained with another model config or "
                f"vocabulary than {data} and the preset give; use a new --out"
            )
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg, indent=1))
    os.replace(tmp, path)


def _replicate(tree, sharding):
    """Place every leaf on all devices of the mesh (identical on every process)."""

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(put, tree)


def _global_sum(local: np.ndarray) -> np.ndarray:
    """Per-shard rows summed over processes (each shard's row is filled by exactly one)."""
    if jax.process_count() == 1:
        return local
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(local)).sum(0)


def train(
    data: str | os.PathLike,
    run: str | os.PathLike,
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, float]:
    """Train (or resume) a run; returns the last logged metrics. `stop_after` ends early (tests).

    The batch is sharded over a 1-D mesh of every device of every process (parameters are
    replicated); each process reads only its data shards. Process 0 writes config and metrics.
    """
    run = Path(run)
    n_proc, rank = jax.process_count(), jax.process_index()
    shards = tcfg.data_shards or n_proc
    if shards % n_proc or tcfg.batch % shards or tcfg.batch % jax.device_count():
        raise TrainingError(
            f"batch {tcfg.batch} must divide into {shards} data shards and {jax.device_count()} "
            f"devices, and the shards ({shards}) among {n_proc} processes"
        )
    owned = tuple(k for k in range(shards) if k % n_proc == rank)
    windows = Windows(data, tcfg.context + tcfg.horizon, shards=shards, owned=owned)
    # Every process must scale proprio alike: fit on all shards' statistics, in shard order.
    windows.norm = Normalizer.fit(
        _global_sum(windows.moment_stats("proprio")),
        windows.meta["action"],
        _global_sum(windows.moment_stats("reward")),
    )
    mcfg = model_config_for(windows.meta, mcfg)
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        _write_config(run, mcfg, tcfg, windows.norm, windows.meta, str(data))
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    by_batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    tx = optimizer(tcfg)
    background = background_of(_global_sum(windows.backgrounds()))
    graphdef, state = init_state(mcfg, tcfg, tx, background)
    mgr = _checkpointer(run, tcfg)
    start = 0
    if mgr.latest_step() is not None:
        state = restore(run, graphdef, state, tcfg)
        start = int(state["step"])
    state = _replicate(state, replicated)
    r_std = windows.norm.reward_std
    steps = {s: make_step(graphdef, tcfg, tx, s, background, r_std) for s in STAGES}
    metrics_path = run / "metrics.jsonl"
    if rank == 0:
        _truncate_metrics(metrics_path, start)
    key = jax.random.key(tcfg.seed)
    last: dict[str, float] = {}
    bad = 0
    end = tcfg.steps if stop_after is None else min(tcfg.steps, stop_after)
    bar = tqdm(
        range(start, end),
        initial=start,
        total=tcfg.steps,
        desc="train",
        disable=not progress or rank != 0,
    )
    t0 = time.perf_counter()
    with open(metrics_path, "a") if rank == 0 else open(os.devnull, "w") as log:
        for i in bar:
            stage = stage_at(i, tcfg)
            local = windows.batch(tcfg.seed, i, tcfg.batch)
            batch = {
                k: jax.make_array_from_process_local_data(by_batch, v)
                for k, v in local.items()
                if k != "state"
            }
            state, m = steps[stage](state, batch, jax.random.fold_in(key, i))
            if (i + 1) % tcfg.log_every == 0 or i + 1 == end:
                m = {k: float(v) for k, v in m.items()}
                bad = int(m.pop("skipped"))
                rate = (i + 1 - start) / (time.perf_counter() - t0)
                last = {"step": i + 1, "stage": stage, **m, "steps_per_s": rate}
                log.write(json.dumps(last) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{m['loss']:.4f}", stage=stage, sps=f"{rate:.2f}")
                if bad >= MAX_BAD_STEPS:
                    raise TrainingError(
                        f"{bad} consecutive non-finite updates at step {i + 1}; "
                        f"lower the learning rate (--lr) or check the data"
                    )
            if (i + 1) % tcfg.ckpt_every == 0 or i + 1 == end:
                mgr.save(i + 1, args=ocp.args.StandardSave(_to_saveable(state)))
    mgr.wait_until_finished()
    mgr.close()
    return last


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in keep))
