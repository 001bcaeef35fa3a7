"""`worldmodel bench`: speed measured side by side in one run, as ratios on the same machine.

Imagination against the real simulator, a train step against the machine's own matmul peak, the
viewer's frame cost, and recording against bare MuJoCo step + render. Untrained weights: speed does
not depend on what the weights are.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

WORLD = "balls"


def _best(fn: Callable[[], Any], reps: int) -> float:
    """Best wall time of `reps` calls (after one warm-up call), seconds."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_peak(n: int = 1024, reps: int = 10) -> float:
    """float32 FLOP/s of a jnp matmul n x n: the ceiling a train step is measured against."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    b = jax.random.normal(jax.random.key(1), (n, n))
    mm = jax.jit(lambda a, b: a @ b)
    return 2 * n**3 / _best(lambda: mm(a, b), reps)


def sim_step_render_per_s(world, steps: int) -> float:
    """Bare MuJoCo: the world's physics substeps plus one offscreen render, per second."""
    import mujoco

    world.reset(0)
    m, d = world.model, world.data
    t = time.perf_counter()
    for _ in range(steps):
        for _ in range(world.n_substeps):
            mujoco.mj_step(m, d)
        world.render()
    return steps / (time.perf_counter() - t)


def imagine_vs_sim(loaded, world, quick: bool) -> dict[str, dict[str, float]]:
    """Imagined step + frame decode per second at B = 1, 64, 256, and latent-only at B = 1024."""
    g, params = loaded.graphdef, loaded.params
    D, A = loaded.cfg.z_dim, loaded.cfg.action_dim

    @jax.jit
    def step_decode(params, carry, action):
        model = nnx.merge(g, params)
        carry = model.dynamics(carry, action)
        frame = jnp.round(model.heads["frame"](carry[1]) * 255).astype(jnp.uint8)
        return carry, frame

    sim = sim_step_render_per_s(world, 100 if quick else 500)
    out: dict[str, dict[str, float]] = {}
    for B in (1, 64, 256):
        carry = (jnp.zeros((B, loaded.cfg.hidden_dim)), jnp.zeros((B, D)))
        action = jnp.zeros((B, A))
        t = _best(
            lambda carry=carry, action=action: step_decode(params, carry, action),
            3 if quick else 20,
        )
        out[f"batch_{B}"] = {"imagined_per_s": B / t, "sim_per_s": sim, "ratio": B / t / sim}
    B, T = 1024, 16 if quick else 64

    @jax.jit
    def latent_rollout(params, carry, actions):
        return nnx.merge(g, params).imagine(carry, actions)[1]

    carry = (jnp.zeros((B, loaded.cfg.hidden_dim)), jnp.zeros((B, D)))
    actions = jnp.zeros((B, T, A))
    t = _best(lambda: latent_rollout(params, carry, actions), 2 if quick else 5)
    out["latent_only_1024"] = {
        "imagined_per_s": B * T / t,
        "sim_per_s": rollout_per_s(world, B, T),
        "ratio": 0.0,
    }
    out["latent_only_1024"]["ratio"] = (
        out["latent_only_1024"]["imagined_per_s"] / out["latent_only_1024"]["sim_per_s"]
    )
    return out


def rollout_per_s(world, B: int, T: int) -> float:
    """mujoco.rollout physics-only control steps per second for B states x T steps, all cores."""
    import mujoco
    from mujoco import rollout

    m = world.model
    world.reset(0)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state = np.empty(mujoco.mj_stateSize(m, spec))
    mujoco.mj_getState(m, world.data, state, spec)
    states = np.tile(state, (B, 1))
    nstep = T * world.n_substeps
    control = np.zeros((B, nstep, m.nu))
    datas = [mujoco.MjData(m) for _ in range(os.cpu_count() or 1)]
    rollout.rollout(m, datas, states, control[:, :2], nstep=2)  # warm the thread pool
    t = time.perf_counter()
    rollout.rollout(m, datas, states, control, nstep=nstep)
    return B * T / (time.perf_counter() - t)


def train_bench(quick: bool) -> dict[str, float]:
    """ms per step of the `small` preset (`tiny` when quick), achieved FLOP/s and MFU."""
    from worldmodel.config import preset
    from worldmodel.data import Windows
    from worldmodel.record import RecordConfig, record
    from worldmodel.train import init_state, make_step, model_config_for, optimizer

    with tempfile.TemporaryDirectory() as tmp:
        record(
            RecordConfig(world=WORLD, episodes=2, steps=20, seed=0), Path(tmp) / "d", progress=False
        )
        mcfg, tcfg = preset("tiny" if quick else "small")
        windows = Windows(Path(tmp) / "d", tcfg.context + tcfg.horizon)
    mcfg = model_config_for(windows.meta, mcfg)
    tx = optimizer(tcfg)
    graphdef, state = init_state(mcfg, tcfg, tx)
    step = make_step(graphdef, tcfg, tx, "joint")
    batch = {k: jnp.asarray(v) for k, v in windows.batch(0, 0, tcfg.batch).items() if k != "state"}
    key = jax.random.key(0)
    compiled = step.lower(state, batch, key).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0))
    # Time the executable the cost came from (calling `step` would compile it a second time).
    state, m = compiled(state, batch, key)  # warm
    jax.block_until_ready(m)
    reps = 2 if quick else 5
    t = time.perf_counter()
    for i in range(reps):
        state, m = compiled(state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready(m)
    dt = (time.perf_counter() - t) / reps
    peak = matmul_peak()
    return {
        "ms_per_step": dt * 1e3,
        "flops_per_s": flops / dt,
        "peak_flops_per_s": peak,
        "mfu": flops / dt / peak,
    }


def viewer_bench(loaded, quick: bool) -> dict[str, float]:
    """Median and p99 ms of one viewer frame (model step + decode of every modality + drawing)."""
    from viewer.app import PlayConfig, play
    from worldmodel.checkpoint import save

    with tempfile.TemporaryDirectory() as tmp:
        save(loaded, tmp)
        result = play(
            PlayConfig(
                worlds=[WORLD], ckpts={WORLD: tmp}, headless=True, steps=40 if quick else 300
            )
        )
    return {"median": result["median"], "p99": result["p99"]}


def _record_worker(args: tuple[str, int, int]) -> tuple[float, float]:
    """In a fresh process: (steps/s recording frames+sound+captions, bare step+render steps/s)."""
    import sims
    from sims.policies import make_policy

    name, steps, seed = args
    world = sims.make(name)
    world.reset(seed)
    policy = make_policy("random", world, np.random.default_rng(seed))
    t = time.perf_counter()
    for i in range(steps):
        if world.step(policy(i))[2]:
            world.reset(seed + i)
    full = steps / (time.perf_counter() - t)
    return full, sim_step_render_per_s(world, steps)


def record_bench(quick: bool) -> dict[str, dict[str, float]]:
    """Recording throughput for 1 and 2 worker processes beside bare MuJoCo step + render."""
    out = {}
    steps = 200 if quick else 2000
    ctx = mp.get_context("spawn")
    for workers in (1, 2):
        with ctx.Pool(workers) as pool:
            res = pool.map(_record_worker, [(WORLD, steps, i) for i in range(workers)])
        full, bare = sum(r[0] for r in res), sum(r[1] for r in res)
        out[f"workers_{workers}"] = {
            "steps_per_s": full,
            "sim_render_per_s": bare,
            "ratio": full / bare,
        }
    return out


def plans_per_s(loaded, quick: bool) -> float:
    """Full plans per second (MPPI at the planner's default budget, reward cost) from one carry."""
    from worldmodel.plan import PlanConfig, optimise, reward_cost

    cfg = PlanConfig()
    carry = (jnp.zeros((1, loaded.cfg.hidden_dim)), jnp.zeros((1, loaded.cfg.z_dim)))
    cost = reward_cost(loaded.graphdef, loaded.params, carry)
    plan = jax.jit(lambda key, mean: optimise(cost, key, mean, cfg)[0])
    mean = jnp.zeros((cfg.horizon, loaded.cfg.action_dim))
    return 1.0 / _best(lambda: plan(jax.random.key(0), mean), 2 if quick else 10)


def bench(quick: bool = False, viewer_only: bool = False) -> dict[str, Any]:
    """Every measurement, in the documented shape."""
    import sims
    from worldmodel.checkpoint import fresh
    from worldmodel.config import preset

    world = sims.make(WORLD)
    loaded = fresh(world.describe(), preset("tiny" if quick else "small")[0])
    dev = jax.devices()[0]
    result: dict[str, Any] = {
        "machine": {
            "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
            "device_count": jax.device_count(),
            "jax": jax.__version__,
        }
    }
    result["viewer_frame_ms"] = viewer_bench(loaded, quick)
    if viewer_only:
        return result
    result["imagine_vs_sim"] = imagine_vs_sim(loaded, world, quick)
    result["train"] = train_bench(quick)
    result["plans_per_s"] = plans_per_s(loaded, quick)
    result["record"] = record_bench(quick)
    world.close()
    return result


def table(result: dict[str, Any]) -> str:
    """The bench as a plain-text table."""
    m = result["machine"]
    lines = [f"machine: {m['device']} x{m['device_count']}, jax {m['jax']}"]
    for k, v in result.get("imagine_vs_sim", {}).items():
        lines.append(
            f"imagine {k:<17} {v['imagined_per_s']:>12,.0f}/s   sim {v['sim_per_s']:>10,.0f}/s"
            f"   ratio {v['ratio']:.2f}"
        )
    if "train" in result:
        t = result["train"]
        lines.append(
            f"train step {t['ms_per_step']:.0f} ms, {t['flops_per_s'] / 1e9:.1f} GFLOP/s of "
            f"{t['peak_flops_per_s'] / 1e9:.1f} peak: mfu {t['mfu']:.2f}"
        )
    v = result["viewer_frame_ms"]
    lines.append(f"viewer frame: median {v['median']:.2f} ms, p99 {v['p99']:.2f} ms")
    if "plans_per_s" in result:
        lines.append(
            f"plans/s (MPPI, 256 samples x 12 steps x 4 iterations): {result['plans_per_s']:.1f}"
        )
    for k, v in result.get("record", {}).items():
        lines.append(
            f"record {k}: {v['steps_per_s']:,.0f} steps/s vs step+render "
            f"{v['sim_render_per_s']:,.0f}/s, ratio {v['ratio']:.2f}"
        )
    return "\n".join(lines)
