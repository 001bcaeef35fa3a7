"""PPO inside the imagined environment, scored in the true simulator.

A Gaussian MLP policy and a value MLP read the latent z; one jitted iteration rolls `num_envs`
vmapped imagined environments (`envs.make_core`, auto-resetting) for `rollout` steps with a
`lax.scan`, computes GAE and runs epochs of minibatch PPO updates. The trained policy then acts
on the encoded observations of the true simulator, beside uniform random actions on the same seeds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from worldmodel.checkpoint import Loaded
from worldmodel.envs import EnvParams, EnvState, collect, make_core, make_params

Policy = dict[str, Any]  # {"net": {"actor", "critic", "log_std"}, "norm": {"mean", "std"}}


@dataclass(frozen=True)
class PPOConfig:
    """PPO in imagination: batch, schedule, losses, network and the imagined episodes."""

    num_envs: int = 256  # imagined environments stepped as one vmapped call
    rollout: int = 16  # steps per environment per iteration (the scan's length)
    iterations: int = 100  # PPO iterations (each: a rollout, then `epochs` passes over it)
    lr: float = 3e-4  # Adam learning rate
    gamma: float = 0.95  # discount: an effective horizon of ~20 steps, under the 50 evaluated
    lam: float = 0.95  # GAE lambda
    clip: float = 0.2  # PPO ratio clip
    epochs: int = 4  # passes over each rollout
    minibatches: int = 4  # minibatches per pass; must divide num_envs * rollout
    entropy: float = 0.0  # entropy bonus coefficient
    value_coef: float = 0.5  # weight of the value loss
    max_grad_norm: float = 0.5  # global gradient-norm clip
    hidden: tuple[int, ...] = (64, 64)  # hidden widths of the policy and of the value MLP
    init_log_std: float = -0.5  # initial log std of the Gaussian, in the model's [-1, 1] scale
    # Imagined episodes are truncated after this many steps: no longer than the dream stays
    # accurate. At 50 PPO learned to exploit the reacher dream (imagined reward -0.04 per step,
    # the true return below random's); at 16 it learns what holds in the true simulator.
    max_steps: int = 16
    done_threshold: float = 0.5  # termination when sigmoid(done logit) exceeds this
    collect_episodes: int = 64  # real random episodes: their first observations are the starts
    collect_steps: int = 8  # steps of each, for the observation statistics
    seed: int = 0  # policy init, sampling, imagined starts and the collected episodes

    def __post_init__(self) -> None:
        batch = self.num_envs * self.rollout
        if batch % self.minibatches:
            raise ValueError(
                f"PPOConfig: minibatches={self.minibatches} must divide num_envs * rollout = "
                f"{self.num_envs} * {self.rollout} = {batch}"
            )


class Transition(NamedTuple):
    """One imagined step of every environment; in a rollout each field gains a leading [T]."""

    obs: jax.Array  # float[N, D]
    action: jax.Array  # float[N, A]: the Gaussian sample, before clipping
    logp: jax.Array  # float[N]
    value: jax.Array  # float[N]
    reward: jax.Array  # float[N]
    done: jax.Array  # bool[N]: the episode ended here (the next obs is a fresh start)
    terminated: jax.Array  # bool[N]: ended by the done head (no bootstrap)
    final_value: jax.Array  # float[N]: value of the latent the step reached, before any reset


class Runner(NamedTuple):
    """What one iteration hands to the next."""

    policy: Policy
    opt_state: optax.OptState
    env_state: EnvState  # batched [N]
    obs: jax.Array  # float[N, D]


# --- the networks ---------------------------------------------------------------------------------
def _dense(key: jax.Array, n_in: int, n_out: int, scale: float) -> dict[str, jax.Array]:
    w = jax.nn.initializers.orthogonal(scale)(key, (n_in, n_out), jnp.float32)
    return {"w": w, "b": jnp.zeros(n_out, jnp.float32)}


def _mlp_init(key: jax.Array, sizes: tuple[int, ...], last_scale: float) -> list[dict]:
    keys = jax.random.split(key, len(sizes) - 1)
    n = len(sizes) - 1
    # Orthogonal init, small last layer (PPO's usual): the first actions are near the mean.
    return [
        _dense(k, a, b, last_scale if i == n - 1 else float(np.sqrt(2.0)))
        for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True))
    ]


def _mlp(layers: list[dict], x: jax.Array) -> jax.Array:
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def init_policy(
    key: jax.Array, z: np.ndarray, action_dim: int, cfg: PPOConfig = PPOConfig()
) -> Policy:
    """Fresh policy and value networks; `z` float[K, D] (real latents) fixes the input scaling."""
    z = np.asarray(z, np.float64)
    mean, std = z.mean(0), z.std(0)
    # Floor the scale: a feature that barely varies among the real latents is not blown up.
    std = np.sqrt(std**2 + (0.1 * std.mean()) ** 2 + 1e-8)
    D = z.shape[1]
    k_pi, k_v = jax.random.split(key)
    net = {
        "actor": _mlp_init(k_pi, (D, *cfg.hidden, action_dim), 0.01),
        "critic": _mlp_init(k_v, (D, *cfg.hidden, 1), 1.0),
        "log_std": jnp.full(action_dim, cfg.init_log_std, jnp.float32),
    }
    norm = {"mean": jnp.asarray(mean, jnp.float32), "std": jnp.asarray(std, jnp.float32)}
    return {"net": net, "norm": norm}


def _features(norm: dict[str, jax.Array], z: jax.Array) -> jax.Array:
    # Clipped: a drifting dream should not saturate every unit of the first layer.
    return jnp.clip((z - norm["mean"]) / norm["std"], -10.0, 10.0)


def apply(
    net: dict[str, Any], norm: dict[str, jax.Array], z: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """z float[B, D] -> (action mean float[B, A] in the model's [-1, 1] scale, log std [A],
    value float[B])."""
    x = _features(norm, z)
    return _mlp(net["actor"], x), net["log_std"], _mlp(net["critic"], x)[:, 0]


def value(policy: Policy, z: jax.Array) -> jax.Array:
    """z float[B, D] -> value float[B]."""
    return _mlp(policy["net"]["critic"], _features(policy["norm"], z))[:, 0]


def to_world(u: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """Model-scale actions (clipped to [-1, 1]) -> the world's own units."""
    return low + (jnp.clip(u, -1.0, 1.0) + 1.0) / 2.0 * (high - low)


def act(policy: Policy, z: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """The deterministic policy: the Gaussian's mean in world units, float[B, A]."""
    mean, _, _ = apply(policy["net"], policy["norm"], z)
    return to_world(mean, low, high)


def _logp(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    return jnp.sum(
        -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), -1
    )


# --- one PPO iteration ----------------------------------------------------------------------------
def gae(traj: Transition, gamma: float, lam: float) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets float[T, N] of a rollout.

    The bootstrap is the value of the latent each step reached before any auto-reset
    (`final_z`), so a truncated episode is bootstrapped and a terminated one is not."""
    next_value = traj.final_value * (1.0 - traj.terminated.astype(jnp.float32))
    delta = traj.reward + gamma * next_value - traj.value

    def back(adv: jax.Array, x: tuple[jax.Array, jax.Array]):
        d, done = x
        adv = d + gamma * lam * (1.0 - done.astype(jnp.float32)) * adv
        return adv, adv

    _, adv = jax.lax.scan(back, jnp.zeros_like(delta[0]), (delta, traj.done), reverse=True)
    return adv, adv + traj.value


def make_iteration(
    env_step: Callable,
    low: jax.Array,
    high: jax.Array,
    cfg: PPOConfig,
    tx: optax.GradientTransformation,
):
    """A pure (runner, env_params, key) -> (runner, metrics): rollout, GAE, PPO epochs.

    `env_step(key, state, action, params) -> (obs, state, reward, done, info)` is an unbatched,
    auto-resetting gymnax-style step (`envs.make_core`'s latent `step`) whose info holds
    `terminated` and `final_z`, the observation the step reached before any reset."""
    step = jax.vmap(env_step, in_axes=(0, 0, 0, None))
    N, T = cfg.num_envs, cfg.rollout
    B = N * T

    def rollout(runner: Runner, params: Any, key: jax.Array):
        policy = runner.policy

        def one(carry, k):
            state, obs = carry
            k_act, k_env = jax.random.split(k)
            mean, log_std, v = apply(policy["net"], policy["norm"], obs)
            u = mean + jnp.exp(log_std) * jax.random.normal(k_act, mean.shape)
            a = to_world(u, low, high)
            obs2, state2, reward, done, info = step(jax.random.split(k_env, N), state, a, params)
            tr = Transition(
                obs,
                u,
                _logp(u, mean, log_std),
                v,
                reward,
                done,
                info["terminated"],
                value(policy, info["final_z"]),
            )
            return (state2, obs2), tr

        (state, obs), traj = jax.lax.scan(
            one, (runner.env_state, runner.obs), jax.random.split(key, T)
        )
        return state, obs, traj

    def loss_fn(net, norm, batch):
        obs, u, logp_old, adv, target = batch
        mean, log_std, v = apply(net, norm, obs)
        ratio = jnp.exp(_logp(u, mean, log_std) - logp_old)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - cfg.clip, 1 + cfg.clip) * adv).mean()
        v_loss = 0.5 * jnp.mean((v - target) ** 2)
        entropy = jnp.sum(log_std + 0.5 * jnp.log(2.0 * jnp.pi * jnp.e))
        loss = pg + cfg.value_coef * v_loss - cfg.entropy * entropy
        kl = jnp.mean((ratio - 1.0) - jnp.log(ratio))  # an unbiased estimate of KL(old || new)
        return loss, {"policy_loss": pg, "value_loss": v_loss, "entropy": entropy, "kl": kl}

    def update(carry, batch):
        net, opt_state, norm = carry
        grads, stats = jax.grad(loss_fn, has_aux=True)(net, norm, batch)
        updates, opt_state = tx.update(grads, opt_state, net)
        return (optax.apply_updates(net, updates), opt_state, norm), stats

    def iteration(runner: Runner, params: Any, key: jax.Array):
        k_roll, k_epochs = jax.random.split(key)
        state, obs, traj = rollout(runner, params, k_roll)
        adv, target = gae(traj, cfg.gamma, cfg.lam)
        D = traj.obs.shape[-1]
        assert traj.obs.shape == (T, N, D), traj.obs.shape
        batch = (
            traj.obs.reshape(B, D),
            traj.action.reshape(B, -1),
            traj.logp.reshape(B),
            adv.reshape(B),
            target.reshape(B),
        )

        def epoch(carry, k):
            perm = jax.random.permutation(k, B)
            mb = jax.tree.map(
                lambda x: x[perm].reshape(cfg.minibatches, B // cfg.minibatches, *x.shape[1:]),
                batch,
            )
            return jax.lax.scan(update, carry, mb)

        policy = runner.policy
        (net, opt_state, _), stats = jax.lax.scan(
            epoch,
            (policy["net"], runner.opt_state, policy["norm"]),
            jax.random.split(k_epochs, cfg.epochs),
        )
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics["reward"] = traj.reward.mean()
        metrics["episodes_ended"] = traj.done.sum()
        policy = {"net": net, "norm": policy["norm"]}
        return Runner(policy, opt_state, state, obs), metrics

    return iteration


def ppo(
    env_reset: Callable,
    env_step: Callable,
    env_params: Any,
    low: jax.Array,
    high: jax.Array,
    obs_stats: np.ndarray,
    cfg: PPOConfig = PPOConfig(),
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Policy, list[dict[str, float]]]:
    """PPO on any unbatched gymnax-style env with vector observations (see `make_iteration`);
    `obs_stats` float[K, D] are observations that fix the policy's input scaling, `low`/`high`
    float[A] the action bounds. -> (policy as numpy, history: one dict per iteration)."""
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.lr, eps=1e-5))
    low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
    iteration = make_iteration(env_step, low, high, cfg, tx)
    k_init, k_reset, k_train = jax.random.split(jax.random.key(cfg.seed), 3)
    policy = init_policy(k_init, obs_stats, low.shape[0], cfg)
    obs, env_state = jax.vmap(env_reset, in_axes=(0, None))(
        jax.random.split(k_reset, cfg.num_envs), env_params
    )
    runner = Runner(policy, tx.init(policy["net"]), env_state, obs)
    # Not donated: the runner is small, and in latent mode obs and env_state.z share a buffer.
    iterate = jax.jit(iteration)
    history = []
    for i in range(cfg.iterations):
        runner, metrics = iterate(runner, env_params, jax.random.fold_in(k_train, i))
        row = {k: float(v) for k, v in metrics.items()}
        if not np.isfinite(row["policy_loss"] + row["value_loss"]):
            raise FloatingPointError(f"PPO iteration {i}: non-finite loss {row}")
        history.append(row)
        if log is not None:
            log(i, row)
    return jax.tree.map(np.asarray, runner.policy), history


def train_in_imagination(
    loaded: Loaded,
    cfg: PPOConfig = PPOConfig(),
    params: EnvParams | None = None,
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Policy, list[dict[str, float]]]:
    """Train a policy with PPO in the model's imagination -> (policy, history).

    Without `params`, `cfg.collect_episodes` real random episodes of the model's world give the
    starts and the input statistics (and `cfg.max_steps`, `cfg.done_threshold` apply); given
    `params`, its starts serve both. `history[i]` holds iteration i's mean imagined reward per
    step (`reward`) and its PPO statistics; `log(i, history[i])` is called after each.
    """
    if params is None:
        collected = collect(loaded, None, cfg.collect_episodes, cfg.collect_steps, seed=cfg.seed)
        params = make_params(loaded, collected, cfg.max_steps, cfg.done_threshold)
        stats_z = collected.z
    else:
        stats_z = np.asarray(params.starts)
    core = make_core(loaded, "latent")
    return ppo(
        core.reset, core.step, params, params.action_low, params.action_high, stats_z, cfg, log
    )


# --- the true simulator ---------------------------------------------------------------------------
def _make_world(world_name: str, size: int, control_dt: float):
    import sims

    return sims.make(world_name, size=size, control_dt=control_dt)


def _summary(returns: list[float], final: list[float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"mean_return": float(np.mean(returns)), "returns": returns}
    if final is not None:
        out["final_distance"] = float(np.mean(final))
        out["final_distances"] = final
    return out


def evaluate_in_world(
    loaded: Loaded,
    policy: Policy,
    world_name: str | None = None,
    episodes: int = 20,
    steps: int = 50,
    seed: int = 1000,
) -> dict[str, Any]:
    """The policy's mean action on the true simulator; episode i starts from world seed
    `seed + i`. Every episode runs in lockstep: one batched encode (z only) per step.

    -> {mean_return, returns[episodes]} plus {final_distance (mean), final_distances} when the
    world has `distance()`."""
    from worldmodel.audio import SAMPLE_RATE
    from worldmodel.imagine import Imaginer

    name = world_name or loaded.config["world"]
    if name != loaded.config["world"]:
        raise ValueError(
            f"evaluate_in_world: the checkpoint is for world {loaded.config['world']!r}, "
            f"not {name!r}"
        )
    cfg = loaded.cfg
    imaginer = Imaginer(loaded)
    low = jnp.asarray(loaded.config["action"]["low"], jnp.float32)
    high = jnp.asarray(loaded.config["action"]["high"], jnp.float32)
    policy_fn = jax.jit(act)
    control_dt = cfg.samples_per_step / SAMPLE_RATE
    worlds = [_make_world(name, cfg.frame_size, control_dt) for _ in range(episodes)]
    try:
        obs = [w.reset(seed + i)[0] for i, w in enumerate(worlds)]
        returns = np.zeros(episodes)
        live = np.ones(episodes, bool)
        before = list(obs)  # a motion model sees no motion at the first step
        for _ in range(steps):
            z, _ = imaginer.encode(obs, previous=before)
            before = list(obs)
            actions = np.asarray(policy_fn(policy, z, low, high))
            for i, w in enumerate(worlds):
                if not live[i]:
                    continue  # an ended episode keeps its last observation and adds nothing
                obs[i], reward, terminated, truncated, _ = w.step(actions[i])
                returns[i] += reward
                live[i] = not (terminated or truncated)
        final = [w.distance() for w in worlds] if hasattr(worlds[0], "distance") else None
    finally:
        for w in worlds:
            w.close()
    return _summary(returns.tolist(), final)


def evaluate_random(
    world_name: str,
    episodes: int = 20,
    steps: int = 50,
    seed: int = 1000,
    *,
    size: int = 64,
    control_dt: float = 0.05,
) -> dict[str, Any]:
    """Uniform random actions on the same episodes as `evaluate_in_world` (same keys out)."""
    world = _make_world(world_name, size, control_dt)
    spec = world.action_spec
    rng = np.random.default_rng(seed)
    returns, final = [], []
    try:
        for i in range(episodes):
            world.reset(seed + i)
            total = 0.0
            for _ in range(steps):
                _, reward, terminated, truncated, _ = world.step(rng.uniform(spec.low, spec.high))
                total += reward
                if terminated or truncated:
                    break
            returns.append(total)
            if hasattr(world, "distance"):
                final.append(world.distance())
    finally:
        world.close()
    return _summary(returns, final if hasattr(world, "distance") else None)


# --- the `worldmodel rl` report -------------------------------------------------------------------
def rl_report(
    loaded: Loaded,
    cfg: PPOConfig,
    episodes: int = 20,
    steps: int = 50,
    seed: int = 1000,
    out: str | None = None,
    log: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train in imagination, evaluate policy and random on the true simulator, write `rl.json`."""
    from worldmodel.audio import SAMPLE_RATE

    world = loaded.config["world"]
    t0 = time.perf_counter()
    policy, history = train_in_imagination(loaded, cfg, log=log)
    train_s = time.perf_counter() - t0
    report = {
        "world": world,
        "ppo": asdict(cfg),
        "train_seconds": round(train_s, 1),
        "imagined_steps": cfg.iterations * cfg.num_envs * cfg.rollout,
        "episodes": episodes,
        "steps": steps,
        "seed": seed,
        "history": history,
        "policy": evaluate_in_world(loaded, policy, world, episodes, steps, seed),
        "random": evaluate_random(
            world,
            episodes,
            steps,
            seed,
            size=loaded.cfg.frame_size,
            control_dt=loaded.cfg.samples_per_step / SAMPLE_RATE,
        ),
    }
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rl.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def table(report: dict[str, Any]) -> str:
    """Imagined reward at the first and last iteration; true-simulator scores, policy vs random."""
    h = report["history"]
    rows = [
        f"imagined reward/step: {h[0]['reward']:.4f} (iteration 1) -> {h[-1]['reward']:.4f} "
        f"(iteration {len(h)}), {report['imagined_steps']} imagined steps in "
        f"{report['train_seconds']:.0f} s",
        f"true simulator, {report['episodes']} episodes x {report['steps']} steps:",
        f"{'who':<8} {'mean return':>12} {'final dist':>11}",
    ]
    for who in ("policy", "random"):
        r = report[who]
        dist = f"{r['final_distance']:11.3f}" if "final_distance" in r else f"{'-':>11}"
        rows.append(f"{who:<8} {r['mean_return']:12.3f} {dist}")
    return "\n".join(rows)
