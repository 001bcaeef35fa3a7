"""The imagined environment: a trained world model as an RL environment.

A pure functional core in the gymnax style (`reset(key, params)`, `step(key, state, action,
params)`, jittable, vmappable, auto-resetting) and, on top of it, a `gymnasium.Env` adapter and a
`gymnasium.vector.VectorEnv` (numpy in and out).

Episodes start from real states: `collect` runs the true simulator under a random policy and
encodes what it sees; the encoded first observations are the bank reset samples from. The
decoded `proprio` is the model's proprioception head (`proprio_head`, which the shipped cartpole
has) or, for a model without one, a ridge-regression readout from z to proprio fit on the same
real (z, proprio) pairs when the params are built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from sims.captions import Vocabulary
from worldmodel.audio import SAMPLE_RATE, griffin_lim
from worldmodel.checkpoint import Loaded
from worldmodel.eval import READOUT_RIDGE, fit_readout
from worldmodel.heads import decode_caption
from worldmodel.imagine import Imaginer

OBS_MODES = ("latent", "decoded")


@struct.dataclass
class EnvParams:
    """Everything a step reads that is data, not code: vmap over it to vary models or tasks."""

    model: nnx.State  # the world model's parameters (split once from the graphdef)
    starts: jax.Array  # float[K, D]: encoded real first observations; reset samples one
    proprio_w: jax.Array  # float[D, P]: ridge readout z -> proprio (world units; no head)
    proprio_b: jax.Array  # float[P]
    action_low: jax.Array  # float[A]: the world's action bounds (its own units)
    action_high: jax.Array  # float[A]
    max_steps: jax.Array  # int32[]: steps after which an episode is truncated
    done_threshold: jax.Array  # float32[]: termination when sigmoid(done logit) exceeds this


class EnvState(NamedTuple):
    """The dynamics' carry and the step count of the episode."""

    h: jax.Array  # float[hidden]: the dynamics' memory
    z: jax.Array  # float[D]: the current latent
    t: jax.Array  # int32[]: steps taken in this episode


class Collected(NamedTuple):
    """Real observations of the true simulator, encoded."""

    starts: np.ndarray  # float32[episodes, D]: latents of each episode's first observation
    z: np.ndarray  # float32[N, D]: latents of every observation
    proprio: np.ndarray  # float32[N, P]: the true proprio of each (world units)


@dataclass(frozen=True)
class Core:
    """The pure functions of one model; the graphdef and config are baked in (static)."""

    obs_mode: str
    reset: Callable[[jax.Array, EnvParams], tuple[Any, EnvState]]
    step: Callable[..., tuple[Any, EnvState, jax.Array, jax.Array, dict[str, jax.Array]]]
    step_env: Callable[..., tuple[Any, EnvState, jax.Array, jax.Array, dict[str, jax.Array]]]
    observe: Callable[[jax.Array, EnvParams], tuple[Any, dict[str, jax.Array]]]


def make_core(loaded: Loaded, obs_mode: str = "latent", griffin_lim_iters: int = 12) -> Core:
    """Pure `reset`/`step` of an unbatched imagined environment (vmap them for a batch).

    `step` auto-resets (the returned obs and state start a new episode when the step ended one);
    `step_env` does not. Observations are z float[D] (`latent`) or {frame uint8[H, W, 3], audio
    float32[S], proprio float32[P]} (`decoded`), with the caption's tokens int32[L] in `info`.
    """
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode={obs_mode!r}; expected one of {', '.join(OBS_MODES)}")
    graphdef, cfg = loaded.graphdef, loaded.cfg
    decoded = ("frame", "audio", "caption", *(("proprio",) if cfg.proprio_head else ()))

    def heads(params: EnvParams, z: jax.Array, names: tuple[str, ...]) -> dict[str, jax.Array]:
        return nnx.merge(graphdef, params.model).decode(z[None], names)

    def observe(z: jax.Array, params: EnvParams) -> tuple[Any, dict[str, jax.Array]]:
        """z float[D] -> (observation, extras); decoded mode adds the caption's tokens."""
        if obs_mode == "latent":
            return z, {}
        out = heads(params, z, decoded)
        frame = jnp.round(out["frame"][0] * 255.0).astype(jnp.uint8)
        # Clip to the range real sound spans, as the Imaginer does: a drifting dream stays finite.
        mel = jnp.clip(out["audio"][0], -12.0, 4.0)
        audio = jnp.clip(griffin_lim(mel, cfg.samples_per_step, griffin_lim_iters), -1.0, 1.0)
        if cfg.proprio_head:  # the head predicts standardised proprio
            proprio = loaded.norm.proprio_world(out["proprio"][0])
        else:
            proprio = z @ params.proprio_w + params.proprio_b
        obs = {"frame": frame, "audio": audio.astype(jnp.float32), "proprio": proprio}
        return obs, {"caption_tokens": decode_caption(out["caption"])[0]}

    def start(key: jax.Array, params: EnvParams) -> EnvState:
        i = jax.random.randint(key, (), 0, params.starts.shape[0])
        z = params.starts[i]
        return EnvState(jnp.zeros(cfg.hidden_dim, z.dtype), z, jnp.zeros((), jnp.int32))

    def reset(key: jax.Array, params: EnvParams) -> tuple[Any, EnvState]:
        """A new episode from a start latent drawn uniformly from `params.starts`."""
        state = start(key, params)
        obs, _ = observe(state.z, params)
        return obs, state

    def transition(state: EnvState, action: jax.Array, params: EnvParams):
        lo, hi = params.action_low, params.action_high
        # The world clips its controls to the bounds; the model saw them scaled to [-1, 1].
        a = jnp.clip(2.0 * (action - lo) / (hi - lo) - 1.0, -1.0, 1.0).astype(jnp.float32)
        h, z = nnx.merge(graphdef, params.model).step((state.h[None], state.z[None]), a[None])
        out = heads(params, z[0], ("reward", "done"))
        terminated = jax.nn.sigmoid(out["done"][0]) > params.done_threshold
        t = state.t + 1
        truncated = (t >= params.max_steps) & ~terminated
        return EnvState(h[0], z[0], t), out["reward"][0], terminated, truncated

    def step_env(key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        """One imagined step without auto-reset -> (obs, state, reward, done, info)."""
        del key  # the dynamics are deterministic; the key is kept for the gymnax signature
        state, reward, terminated, truncated = transition(state, action, params)
        obs, extras = observe(state.z, params)
        info = {"terminated": terminated, "truncated": truncated, **extras}
        return obs, state, reward, terminated | truncated, info

    def step(key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        """One imagined step; when it ends the episode, obs and state are a fresh reset's.
        `info["final_z"]` is the latent the episode ended in."""
        state, reward, terminated, truncated = transition(state, action, params)
        done = terminated | truncated
        fresh = start(key, params)
        nxt = jax.tree.map(lambda a, b: jax.lax.select(done, a, b), fresh, state)
        # Decode once, from the state the caller continues with.
        obs, extras = observe(nxt.z, params)
        info = {"terminated": terminated, "truncated": truncated, "final_z": state.z, **extras}
        return obs, nxt, reward, done, info

    return Core(obs_mode, reset, step, step_env, observe)


# --- real starts and the proprio readout -------------------------------------------------------
def collect(
    loaded: Loaded,
    world: Any = None,
    episodes: int = 4,
    steps: int = 50,
    seed: int = 0,
    batch: int = 32,
) -> Collected:
    """Run the true simulator (`world`: a `sims` World, a name, or the model's own world) under
    the smooth random policy and encode every observation."""
    import sims
    from sims.policies import random_policy

    cfg = loaded.cfg
    if world is None or isinstance(world, str):
        name = world or loaded.config["world"]
        if name == "mjcf":
            raise ValueError("a generic --mjcf world: pass the World object to collect(world=...)")
        world = sims.make(name, size=cfg.frame_size, control_dt=cfg.samples_per_step / SAMPLE_RATE)
    if tuple(world.frame_shape) != (cfg.frame_size, cfg.frame_size, 3):
        raise ValueError(
            f"world {world.name!r} renders {world.frame_shape} frames; the model expects "
            f"{cfg.frame_size}x{cfg.frame_size}"
        )
    observations, firsts = [], []
    for e in range(episodes):
        obs, _ = world.reset(seed + e)
        act = random_policy(world, np.random.default_rng([seed, e]))
        firsts.append(len(observations))
        observations.append(obs)
        for t in range(steps):
            obs, _, terminated, truncated, _ = world.step(act(t))
            observations.append(obs)
            if terminated or truncated:
                break
    imaginer = Imaginer(loaded)
    zs = []
    for i in range(0, len(observations), batch):
        chunk = observations[i : i + batch]
        # Pad to a fixed batch so every chunk reuses one compiled encoder.
        padded = chunk + [chunk[-1]] * (batch - len(chunk))
        zs.append(np.asarray(imaginer.encode(padded)[0])[: len(chunk)])
    z = np.concatenate(zs).astype(np.float32)
    proprio = np.stack([o["proprio"] for o in observations]).astype(np.float32)
    return Collected(z[firsts], z, proprio)


def make_params(
    loaded: Loaded,
    collected: Collected,
    max_steps: int = 200,
    done_threshold: float = 0.5,
    ridge: float = READOUT_RIDGE,
) -> EnvParams:
    """EnvParams from a model and its `collect`ed real observations."""
    norm = loaded.norm
    # Fit on standardised proprio (every feature weighs the same), then fold the scaling back in.
    w, b = fit_readout(collected.z, norm.proprio(collected.proprio), ridge)
    return EnvParams(
        model=loaded.params,
        starts=jnp.asarray(collected.starts),
        proprio_w=jnp.asarray(w * np.asarray(norm.proprio_std, np.float32)),
        proprio_b=jnp.asarray(norm.proprio_world(b)),
        action_low=jnp.asarray(loaded.config["action"]["low"], jnp.float32),
        action_high=jnp.asarray(loaded.config["action"]["high"], jnp.float32),
        max_steps=jnp.asarray(max_steps, jnp.int32),
        done_threshold=jnp.asarray(done_threshold, jnp.float32),
    )


# --- gymnasium adapters ---------------------------------------------------------------------------
def _spaces(loaded: Loaded, obs_mode: str) -> tuple[spaces.Space, spaces.Box]:
    cfg, spec = loaded.cfg, loaded.config["action"]
    action = spaces.Box(
        np.asarray(spec["low"], np.float32), np.asarray(spec["high"], np.float32), dtype=np.float32
    )
    if obs_mode == "latent":
        return spaces.Box(-np.inf, np.inf, (cfg.z_dim,), np.float32), action
    obs = spaces.Dict(
        {
            "frame": spaces.Box(0, 255, (cfg.frame_size, cfg.frame_size, 3), np.uint8),
            "audio": spaces.Box(-1.0, 1.0, (cfg.samples_per_step,), np.float32),
            "proprio": spaces.Box(-np.inf, np.inf, (cfg.proprio_dim,), np.float32),
        }
    )
    return obs, action


def _numpy(tree: Any) -> Any:
    return jax.tree.map(np.asarray, tree)


class _Adapter:
    """What both adapters share: params (collected unless given), the core, spaces, captions."""

    def _setup(
        self,
        loaded: Loaded,
        world: Any,
        obs_mode: str,
        max_steps: int,
        done_threshold: float,
        params: EnvParams | None,
        collect_episodes: int,
        collect_steps: int,
    ) -> None:
        if params is None:
            collected = collect(loaded, world, collect_episodes, collect_steps)
            params = make_params(loaded, collected, max_steps, done_threshold)
        self.loaded, self.params = loaded, params
        self.core = make_core(loaded, obs_mode)
        self.vocab = Vocabulary(loaded.config["vocab"])
        decoded = make_core(loaded, "decoded")

        def reset(key: jax.Array, params: EnvParams):
            """-> (obs, state, extras): a reset with the caption's tokens in decoded mode."""
            _, state = self.core.reset(key, params)  # its obs is dead code under jit
            obs, extras = self.core.observe(state.z, params)
            return obs, state, extras

        self._reset_fn, self._decoded_observe = reset, decoded.observe


class ImaginedEnv(_Adapter, gymnasium.Env):
    """One imagined world as a `gymnasium.Env`: numpy in and out, the caption in `info`.

    No auto-reset (Gymnasium's contract): call `reset` after `terminated` or `truncated`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        loaded: Loaded,
        world: Any = None,
        *,
        obs_mode: str = "decoded",
        max_steps: int = 200,
        done_threshold: float = 0.5,
        params: EnvParams | None = None,
        collect_episodes: int = 4,
        collect_steps: int = 50,
        render_mode: str | None = None,
    ) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r}; expected None or 'rgb_array'")
        self.render_mode = render_mode
        self._setup(
            loaded,
            world,
            obs_mode,
            max_steps,
            done_threshold,
            params,
            collect_episodes,
            collect_steps,
        )
        fps = round(SAMPLE_RATE / loaded.cfg.samples_per_step)
        self.metadata = {**type(self).metadata, "render_fps": fps}
        self.observation_space, self.action_space = _spaces(loaded, obs_mode)
        self._reset = jax.jit(self._reset_fn)
        self._step = jax.jit(self.core.step_env)
        self._frame = jax.jit(lambda z, p: self._decoded_observe(z, p)[0]["frame"])
        self._state: EnvState | None = None
        self._obs: Any = None

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        info = _numpy(info)
        if "caption_tokens" in info:
            info["caption"] = self.vocab.decode(info["caption_tokens"])
        return info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode from a real start latent; the same `seed` gives the same start."""
        super().reset(seed=seed)
        key = jax.random.key(int(self.np_random.integers(2**31)))
        obs, self._state, extras = self._reset(key, self.params)
        self._obs = _numpy(obs)
        return self._obs, self._info({**extras, "step": 0})

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """One imagined step under an action in the world's own units."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        a = jnp.asarray(np.asarray(action, np.float32).reshape(self.action_space.shape))
        key = jax.random.key(0)  # unused by step_env: the dynamics are deterministic
        obs, self._state, reward, _, info = self._step(key, self._state, a, self.params)
        self._obs, info = _numpy(obs), self._info(info)
        terminated, truncated = bool(info.pop("terminated")), bool(info.pop("truncated"))
        info["step"] = int(self._state.t)
        return self._obs, float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The current imagined frame, uint8[H, W, 3] (render_mode 'rgb_array')."""
        if self.render_mode is None or self._state is None:
            return None
        if self.core.obs_mode == "decoded":
            return self._obs["frame"]
        return np.asarray(self._frame(self._state.z, self.params))


class ImaginedVectorEnv(_Adapter, VectorEnv):
    """`num_envs` imagined worlds stepped as one vmapped, jitted call; same-step auto-reset.

    When a sub-environment's episode ends, its returned observation is the next episode's first,
    and `info["final_obs"]` (masked by `info["_final_obs"]`) holds the observation it ended in.
    """

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        loaded: Loaded,
        num_envs: int,
        world: Any = None,
        *,
        obs_mode: str = "decoded",
        max_steps: int = 200,
        done_threshold: float = 0.5,
        params: EnvParams | None = None,
        collect_episodes: int = 4,
        collect_steps: int = 50,
        render_mode: str | None = None,
    ) -> None:
        self.num_envs, self.render_mode = num_envs, render_mode
        self._setup(
            loaded,
            world,
            obs_mode,
            max_steps,
            done_threshold,
            params,
            collect_episodes,
            collect_steps,
        )
        self.single_observation_space, self.single_action_space = _spaces(loaded, obs_mode)
        batch_space = gymnasium.vector.utils.batch_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._reset = jax.jit(jax.vmap(self._reset_fn, in_axes=(0, None)))
        self._step = jax.jit(jax.vmap(self.core.step, in_axes=(0, 0, 0, None)))
        self._observe = jax.jit(jax.vmap(self.core.observe, in_axes=(0, None)))
        self._frames = jax.jit(
            jax.vmap(lambda z, p: self._decoded_observe(z, p)[0]["frame"], in_axes=(0, None))
        )
        self._key: jax.Array | None = None
        self._state: EnvState | None = None
        self._obs: Any = None

    def _keys(self) -> jax.Array:
        if self._key is None:
            self._key = jax.random.key(int(self.np_random.integers(2**31)))
        self._key, sub = jax.random.split(self._key)
        return jax.random.split(sub, self.num_envs)

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        info = _numpy(info)
        if "caption_tokens" in info:
            info["caption"] = np.array([self.vocab.decode(t) for t in info["caption_tokens"]])
            info["_caption"] = np.ones(self.num_envs, bool)
        return info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset every sub-environment; the same `seed` gives the same starts."""
        super().reset(seed=seed)
        if seed is not None:
            self._key = jax.random.key(seed)
        obs, self._state, extras = self._reset(self._keys(), self.params)
        self._obs = _numpy(obs)
        return self._obs, self._info(extras)

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every sub-environment: actions float[num_envs, A] in the world's own units."""
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        a = jnp.asarray(np.asarray(actions, np.float32).reshape(self.action_space.shape))
        obs, self._state, reward, done, info = self._step(self._keys(), self._state, a, self.params)
        self._obs, info = _numpy(obs), self._info(info)
        terminated, truncated = info.pop("terminated"), info.pop("truncated")
        final_z, done = info.pop("final_z"), np.asarray(done)
        if done.any():
            final, _ = self._observe(jnp.asarray(final_z), self.params)
            info["final_obs"], info["_final_obs"] = _numpy(final), done
        return self._obs, np.asarray(reward, np.float32), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The current imagined frames, uint8[num_envs, H, W, 3]."""
        if self.render_mode is None or self._state is None:
            return None
        if self.core.obs_mode == "decoded":
            return self._obs["frame"]
        return np.asarray(self._frames(self._state.z, self.params))
