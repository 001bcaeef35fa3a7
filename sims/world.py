"""A MuJoCo world stepped at a control rate and observed as frame, audio, caption, proprio and
state.

`World` turns any MJCF model into one (the generic `--mjcf` world); the bundled worlds subclass it
and override the hooks `_reset_state`, `_task` and `_motions`, plus a few class attributes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault(
    "MUJOCO_GL", "egl"
)  # headless offscreen rendering unless the user chose otherwise
import mujoco

from sims.captions import BASE_WORDS, MAX_TOKENS, Event, Vocabulary, compose, phrase
from sims.sound import DEFAULT_MATERIAL, MATERIALS, SAMPLE_RATE, Synth

ASSETS = Path(__file__).parent / "assets"
# Letters only: arrows, Space, Tab and M, R, P, H belong to the viewer.
GENERIC_KEYS = (("q", "a"), ("w", "s"), ("e", "d"), ("u", "j"), ("i", "k"), ("o", "l"))
_LIMIT = mujoco.mjtConstraint.mjCNSTR_LIMIT_JOINT


class WorldError(ValueError):
    """A world cannot be built from what it was given (bad MJCF, no actuators, bad option)."""


@dataclass(frozen=True)
class ActionSpec:
    """Names and bounds of a world's actions (one per actuator)."""

    names: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    @property
    def shape(self) -> tuple[int]:
        return (len(self.names),)

    def to_dict(self) -> dict[str, list]:
        return {"names": list(self.names), "low": self.low.tolist(), "high": self.high.tolist()}

    def scale(self, u: np.ndarray) -> np.ndarray:
        """Actions in [-1, 1] (any leading axes) -> the same actions within [low, high]."""
        return self.low + (np.asarray(u) + 1.0) / 2.0 * (self.high - self.low)


def load_model(path: str | os.PathLike) -> mujoco.MjModel:
    """Load an MJCF file; errors name the file and carry MuJoCo's own message."""
    path = Path(path)
    if not path.is_file():
        raise WorldError(f"{path}: no such MJCF file")
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except ValueError as e:
        raise WorldError(f"{path}: MuJoCo could not load this MJCF: {e}") from None


class World:
    """A MuJoCo model stepped at `control_dt`, yielding one multimodal observation per step."""

    name = "mjcf"
    asset: str | None = None  # bundled MJCF file in sims/assets
    camera: str | None = None  # named camera to render from; None = MuJoCo's free camera
    keys: dict[str, tuple[int, float]] | None = (
        None  # key name -> (action index, +-1); None = generic
    )
    proprio_joints: tuple[str, ...] | None = (
        None  # joints a robot senses; None = all but free joints
    )
    axis_words = (("left", "right"), ("back", "forward"), ("down", "up"))  # -/+ along world x, y, z
    extra_words: tuple[str, ...] = ()  # words of the world's own clauses
    move_min = 0.05  # m/s below which nothing is said to move
    move_quick = 0.5  # m/s from which it moves "quickly"
    impact_min = 0.1  # m/s normal speed from which an impact is captioned
    sound_min = 0.02  # m/s normal speed from which an impact is heard
    motor_speed_ref = 1.0  # joint speed (m/s or rad/s) at which a motor whines at full strength
    limit_material = "wood"  # what a joint's end stop is made of
    synth_options: dict[str, float] = {}

    def __init__(
        self,
        mjcf: str | os.PathLike | None = None,
        *,
        size: int = 64,
        control_dt: float = 0.05,
        camera: str | None = None,
        max_steps: int | None = None,
        noise_floor: float = 0.0,
    ) -> None:
        if mjcf is None and self.asset is None:
            raise WorldError("a generic world needs an MJCF file (--mjcf PATH)")
        self.mjcf_path = Path(mjcf) if mjcf is not None else ASSETS / str(self.asset)
        self.model = m = load_model(self.mjcf_path)
        if m.nu == 0:
            raise WorldError(
                f"{self.mjcf_path}: the model has no actuators; a world needs at least one"
            )
        if size < 8:
            raise WorldError(f"size={size}: frames must be at least 8 pixels across")
        self.n_substeps = max(1, round(control_dt / m.opt.timestep))
        if abs(self.n_substeps * m.opt.timestep - control_dt) > 1e-9:
            raise WorldError(
                f"{self.mjcf_path}: control_dt={control_dt} is not a multiple of the MJCF timestep "
                f"{m.opt.timestep}"
            )
        self.control_dt = control_dt
        self.sample_rate = SAMPLE_RATE
        self.samples_per_step = round(SAMPLE_RATE * control_dt)
        self.max_steps = max_steps
        self.data = mujoco.MjData(m)
        self.frame_shape = (size, size, 3)
        self._setup_render(size, camera or self.camera)
        self._setup_entities()
        self._setup_actions()
        self.proprio_names, self._proprio_q, self._proprio_v = self._joint_layout(
            self.proprio_joints
        )
        self.state_names = self._state_names()
        self.vocab = Vocabulary(self._vocab_words())
        self.synth = Synth(
            samples_per_step=self.samples_per_step,
            n_substeps=self.n_substeps,
            n_motors=m.nu,
            noise_floor=noise_floor,
            **self.synth_options,
        )
        self._t = 0
        self._prev_pairs: set[tuple[int, int]] = set()
        self._prev_limits: set[int] = set()

    # --- set-up ---------------------------------------------------------------------------------
    def _setup_render(self, size: int, camera: str | None) -> None:
        m = self.model
        # Fast offscreen rendering on a CPU: no shadow map, no multisampling, no reflections.
        m.vis.quality.shadowsize = 0
        m.vis.quality.offsamples = 0
        m.mat_reflectance[:] = 0.0
        m.vis.global_.offwidth = max(m.vis.global_.offwidth, size)
        m.vis.global_.offheight = max(m.vis.global_.offheight, size)
        self._renderer = mujoco.Renderer(m, size, size)
        if camera is not None:
            if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
                raise WorldError(f"{self.mjcf_path}: no camera named {camera!r}")
            self._camera: Any = camera
        else:
            self._camera = mujoco.MjvCamera()
            mujoco.mjv_defaultFreeCamera(m, self._camera)

    def _setup_entities(self) -> None:
        """Things that can touch: each moving body, and each geom of the static world body."""
        m = self.model
        self._geom_body = m.geom_bodyid.copy()
        self._geom_entity = np.where(
            self._geom_body == 0, m.nbody + np.arange(m.ngeom), self._geom_body
        )
        self._entity_phrase: dict[int, str] = {}
        self._entity_mass: dict[int, float] = {}
        for b in range(1, m.nbody):
            self._entity_phrase[b] = phrase(m.body(b).name)
            self._entity_mass[b] = float(m.body_mass[b])
        for g in np.flatnonzero(self._geom_body == 0):
            self._entity_phrase[m.nbody + g] = phrase(m.geom(g).name)
            self._entity_mass[m.nbody + g] = np.inf
        custom = {
            mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_TEXT, i): bytes(
                m.text_data[m.text_adr[i] : m.text_adr[i] + m.text_size[i] - 1]
            ).decode()
            for i in range(m.ntext)
        }
        self._geom_material = []
        for g in range(m.ngeom):
            default = "stone" if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE else DEFAULT_MATERIAL
            mat = custom.get(f"sound:{m.geom(g).name}", default)
            if mat not in MATERIALS:
                raise WorldError(
                    f"{self.mjcf_path}: custom text sound:{m.geom(g).name} names material {mat!r}; "
                    f"expected one of {sorted(MATERIALS)}"
                )
            self._geom_material.append(mat)
        self._geom_size = np.where(m.geom_rbound > 0, m.geom_rbound, 1.0)

    def _setup_actions(self) -> None:
        m = self.model
        names = tuple(m.actuator(i).name or f"actuator{i}" for i in range(m.nu))
        limited = m.actuator_ctrllimited.astype(bool)
        low = np.where(limited, m.actuator_ctrlrange[:, 0], -1.0)
        high = np.where(limited, m.actuator_ctrlrange[:, 1], 1.0)
        self.action_spec = ActionSpec(names, low.astype(np.float32), high.astype(np.float32))
        if self.keys is None:
            self.keys = {}
            for i, (up, down) in enumerate(GENERIC_KEYS[: m.nu]):
                self.keys[up], self.keys[down] = (i, 1.0), (i, -1.0)
        gear = np.abs(m.actuator_gear[:, 0])
        self._force_max = np.maximum(gear * np.maximum(np.abs(low), np.abs(high)), 1e-6)
        self._gear = np.maximum(gear, 1e-6)

    def _joint_layout(
        self, joints: tuple[str, ...] | None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        m = self.model
        if joints is None:
            ids = [j for j in range(m.njnt) if m.jnt_type[j] != mujoco.mjtJoint.mjJNT_FREE]
        else:
            ids = [self._joint_id(n) for n in joints]
        qadr = np.array([m.jnt_qposadr[j] for j in ids], dtype=int)
        vadr = np.array([m.jnt_dofadr[j] for j in ids], dtype=int)
        names = [f"{m.joint(j).name or f'joint{j}'}_pos" for j in ids]
        names += [f"{m.joint(j).name or f'joint{j}'}_vel" for j in ids]
        return names, qadr, vadr

    def _joint_id(self, name: str) -> int:
        j = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if j < 0:
            raise WorldError(f"{self.mjcf_path}: no joint named {name!r}")
        return j

    def _state_names(self) -> list[str]:
        m = self.model
        qpos = [f"qpos{i}" for i in range(m.nq)]
        qvel = [f"qvel{i}" for i in range(m.nv)]
        for j in range(m.njnt):
            name = m.joint(j).name or f"joint{j}"
            nq = {0: 7, 1: 4}.get(int(m.jnt_type[j]), 1)
            nv = {0: 6, 1: 3}.get(int(m.jnt_type[j]), 1)
            for k in range(nq):
                qpos[m.jnt_qposadr[j] + k] = name if nq == 1 else f"{name}_{k}"
            for k in range(nv):
                qvel[m.jnt_dofadr[j] + k] = f"{name}_vel" if nv == 1 else f"{name}_vel_{k}"
        mocap = []
        for b in range(m.nbody):
            if m.body_mocapid[b] >= 0:
                mocap += [f"{m.body(b).name or f'body{b}'}_{ax}" for ax in "xyz"]
        return qpos + qvel + mocap

    def _vocab_words(self) -> list[str]:
        words = (
            list(BASE_WORDS)
            + [w for pair in self.axis_words for w in pair]
            + list(self.extra_words)
        )
        for p in self._entity_phrase.values():
            words += p.split()
        for j in np.flatnonzero(self.model.jnt_limited):
            words += phrase(self.model.joint(j).name).split()
        return words

    # --- the World API --------------------------------------------------------------------------
    def reset(self, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode from `seed`; returns (observation, info)."""
        rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        self._reset_state(rng)
        mujoco.mj_forward(self.model, self.data)
        self.synth.reset(np.random.default_rng(rng.integers(2**63)))
        self._prev_pairs = set(self._contacts())
        self._prev_limits = self._limits()
        self._t = 0
        audio = np.zeros(self.samples_per_step, dtype=np.float32)
        return self._observe(audio, ""), {"events": [], "step": 0}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Apply `action` for a step; returns (obs, reward, terminated, truncated, info)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != self.action_spec.shape or not np.all(np.isfinite(a)):
            raise ValueError(
                f"{self.name}: action must be {self.action_spec.shape[0]} finite numbers "
                f"({', '.join(self.action_spec.names)}), got {np.asarray(action).tolist()}"
            )
        self.data.ctrl[:] = np.clip(a, self.action_spec.low, self.action_spec.high)
        events: list[Event] = []
        for k in range(self.n_substeps):
            mujoco.mj_step(self.model, self.data)
            self._observe_substep(k, events)
        reward, terminated, task_events = self._task(events)
        events += task_events
        events += self._motions()
        self._t += 1
        truncated = bool(
            self.max_steps is not None and self._t >= self.max_steps and not terminated
        )
        obs = self._observe(self.synth.render(), compose(events))
        info = {"events": [e.to_dict() for e in events], "step": self._t}
        return obs, float(reward), bool(terminated), truncated, info

    def action_from_keys(self, pressed: set[str] | list[str]) -> np.ndarray:
        """The action for a set of held keys (names as pygame.key.name gives them)."""
        v = np.zeros(self.model.nu)
        for key in pressed:
            if key in self.keys:
                i, s = self.keys[key]
                v[i] += s
        v = np.clip(v, -1.0, 1.0)
        lo, hi = self.action_spec.low, self.action_spec.high
        return ((lo + hi) / 2 + v * (hi - lo) / 2).astype(np.float32)

    def get_physics(self) -> np.ndarray:
        """The exact integration state, for oracle planning (restore with `set_physics`)."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        out = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, out, spec)
        return out

    def set_physics(self, physics: np.ndarray) -> None:
        """Restore a state from `get_physics` (sound and captions are not rewound)."""
        mujoco.mj_setState(self.model, self.data, physics, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)

    def describe(self) -> dict[str, Any]:
        """Everything a dataset or viewer needs to know about this world, JSON-friendly."""
        return {
            "world": self.name,
            "mjcf": str(self.mjcf_path) if self.asset is None else self.asset,
            "control_dt": self.control_dt,
            "frame_shape": list(self.frame_shape),
            "audio": {"sample_rate": self.sample_rate, "samples_per_step": self.samples_per_step},
            "caption": {"vocab": list(self.vocab.words), "max_tokens": MAX_TOKENS},
            "action": self.action_spec.to_dict(),
            "keys": {k: list(v) for k, v in (self.keys or {}).items()},
            "proprio_names": self.proprio_names,
            "state_names": self.state_names,
        }

    def observe(self) -> dict[str, Any]:
        """The current observation, silent and uncaptioned (after the state was set by hand)."""
        return self._observe(np.zeros(self.samples_per_step, dtype=np.float32), "")

    def render(self) -> np.ndarray:
        """The current frame, uint8[H, W, 3]."""
        self._renderer.update_scene(self.data, camera=self._camera)
        return self._renderer.render().copy()

    def close(self) -> None:
        self._renderer.close()

    # --- observation ----------------------------------------------------------------------------
    def _observe(self, audio: np.ndarray, caption: str) -> dict[str, Any]:
        d = self.data
        state = np.concatenate([d.qpos, d.qvel, d.mocap_pos.ravel()]).astype(np.float32)
        proprio = np.concatenate([d.qpos[self._proprio_q], d.qvel[self._proprio_v]]).astype(
            np.float32
        )
        return {
            "frame": self.render(),
            "audio": audio,
            "caption": caption,
            "caption_tokens": self.vocab.encode(caption),
            "proprio": proprio,
            "state": state,
        }

    def _point_velocity(self, bodies: np.ndarray, points: np.ndarray) -> np.ndarray:
        """World-frame linear velocity of `points` moving with `bodies` (from MuJoCo's cvel)."""
        cvel = self.data.cvel[bodies]
        r = points - self.data.subtree_com[self.model.body_rootid[bodies]]
        w, v = cvel[:, :3], cvel[:, 3:]
        # v + w x r, written out: np.cross costs more than the physics step on arrays this small.
        return v + np.stack(
            [
                w[:, 1] * r[:, 2] - w[:, 2] * r[:, 1],
                w[:, 2] * r[:, 0] - w[:, 0] * r[:, 2],
                w[:, 0] * r[:, 1] - w[:, 1] * r[:, 0],
            ],
            axis=1,
        )

    def _contacts(self) -> dict[tuple[int, int], tuple[float, float, int, int]]:
        """Touching entity pairs -> (normal speed, slip, geom, geom) of the fastest contact."""
        d = self.data
        n = d.ncon
        if n == 0:
            return {}
        c = d.contact
        g1, g2 = c.geom1[:n], c.geom2[:n]
        b1, b2 = self._geom_body[g1], self._geom_body[g2]
        pos = c.pos[:n]
        vel = self._point_velocity(np.concatenate([b1, b2]), np.concatenate([pos, pos]))
        rel = vel[:n] - vel[n:]
        normal = c.frame[:n, :3]
        along = (rel * normal).sum(1)
        slip = np.sqrt(np.maximum((rel * rel).sum(1) - along * along, 0.0)).tolist()
        vn = np.abs(along).tolist()
        e1, e2 = self._geom_entity[g1].tolist(), self._geom_entity[g2].tolist()
        g1, g2 = g1.tolist(), g2.tolist()
        pairs: dict[tuple[int, int], tuple[float, float, int, int]] = {}
        for i in range(n):
            key = (e1[i], e2[i]) if e1[i] < e2[i] else (e2[i], e1[i])
            if key not in pairs or vn[i] > pairs[key][0]:
                pairs[key] = (vn[i], slip[i], g1[i], g2[i])
        return pairs

    def _limits(self) -> set[int]:
        d = self.data
        return set(d.efc_id[: d.nefc][d.efc_type[: d.nefc] == _LIMIT].tolist())

    def _observe_substep(self, k: int, events: list[Event]) -> None:
        """Turn one physics substep into sound and events: contact onsets, slides, limits, motors"""
        m, d = self.model, self.data
        pairs = self._contacts()
        for key, (vn, slip, ga, gb) in pairs.items():
            if key in self._prev_pairs:
                if slip > 0.01:
                    self.synth.slide(k, self._geom_material[ga], 0.5 * slip)
                    self.synth.slide(k, self._geom_material[gb], 0.5 * slip)
                continue
            if vn < self.sound_min:
                continue
            ma, mb = self._entity_mass[key[0]], self._entity_mass[key[1]]
            mass = mb if np.isinf(ma) else ma if np.isinf(mb) else ma * mb / (ma + mb)
            parts = [(self._geom_material[g], float(self._geom_size[g])) for g in (ga, gb)]
            self.synth.impact(k, vn, mass, parts)
            a, b = self._impact_order(key)
            if vn >= self.impact_min and a and b:
                events.append(Event("impact", f"{a} hits {b}", vn, k, 1, {"bodies": [a, b]}))
        for key in self._prev_pairs - pairs.keys():
            a, b = (self._entity_phrase.get(e, "") for e in key)
            events.append(Event("contact_end", "", 0.0, k, 9, {"bodies": [a, b]}))
        self._prev_pairs = set(pairs)
        limits = self._limits()
        for j in limits - self._prev_limits:
            dof = m.jnt_dofadr[j]
            hinge = m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
            speed = abs(float(d.qvel[dof])) * (
                0.15 if hinge else 1.0
            )  # hinge: speed at a ~15 cm lever
            if speed < self.sound_min:
                continue
            body = m.jnt_bodyid[j]
            geoms = np.flatnonzero(self._geom_body == body)
            g = int(geoms[0]) if len(geoms) else 0
            self.synth.impact(
                k,
                speed,
                float(m.body_subtreemass[body]),
                [(self._geom_material[g], float(self._geom_size[g])), (self.limit_material, 0.05)],
            )
            high = d.qpos[m.jnt_qposadr[j]] > m.jnt_range[j].mean()
            text = self._limit_text(j, high) if speed >= self.impact_min else ""
            events.append(Event("limit", text, speed, k, 1, {"joint": m.joint(j).name}))
        self._prev_limits = limits
        joint_speed = np.abs(d.actuator_velocity) / self._gear / self.motor_speed_ref
        self.synth.motors(k, joint_speed, np.abs(d.actuator_force) / self._force_max)

    def _impact_order(self, key: tuple[int, int]) -> tuple[str, str]:
        """Phrases of a touching pair, the faster-moving one first (it does the hitting)."""
        speeds = []
        for e in key:
            if e >= self.model.nbody:
                speeds.append(0.0)
            else:
                speeds.append(float(np.linalg.norm(self.data.cvel[e, 3:])))
        a, b = key if speeds[0] >= speeds[1] else key[::-1]
        return self._entity_phrase.get(a, ""), self._entity_phrase.get(b, "")

    # --- hooks for bundled worlds ---------------------------------------------------------------
    def _reset_state(self, rng: np.random.Generator) -> None:
        """Set qpos/qvel (and mocap) for a new episode; generic worlds start at keyframe 0."""
        if self.model.nkey:
            mujoco.mj_resetDataKeyframe(self.model, self.data, 0)

    def _task(self, events: list[Event]) -> tuple[float, bool, list[Event]]:
        """(reward, terminated, task events) after a control step; the generic world has no task."""
        return 0.0, False, []

    def _limit_text(self, joint: int, high: bool) -> str:
        p = phrase(self.model.joint(joint).name)
        return f"{p} hits its limit" if p else ""

    def _motions(self) -> list[Event]:
        """A clause for the fastest named body: "the red ball moves left quickly"."""
        m, d = self.model, self.data
        bodies = np.array(
            [b for b, p in self._entity_phrase.items() if b < m.nbody and p], dtype=int
        )
        if not len(bodies):
            return []
        vel = self._point_velocity(bodies, d.xipos[bodies])
        speed = np.linalg.norm(vel, axis=1)
        i = int(np.argmax(speed))
        if speed[i] < self.move_min:
            return []
        axis = int(np.argmax(np.abs(vel[i])))
        direction = self.axis_words[axis][int(vel[i, axis] > 0)]
        bucket = "quickly" if speed[i] >= self.move_quick else "slowly"
        text = f"{self._entity_phrase[int(bodies[i])]} moves {direction} {bucket}"
        return [Event("motion", text, float(speed[i]), self.n_substeps - 1, 2)]
