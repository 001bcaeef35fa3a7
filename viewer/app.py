"""The real-time window: steer a world; see, hear and read the world model's imagined version of it.

The true simulator runs side by side under the same actions: it grounds the dream (Backspace, or
every `horizon` steps) and measures how far the dream has drifted. Headless mode runs the same loop
with scripted keys and writes an MP4 (with sound), a WAV and a final PNG.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

HELP = [
    ("Space", "pause / run"),
    ("Right", "one step while paused"),
    ("Backspace", "reset: re-encode from the true simulator"),
    ("+ / -", "speed"),
    ("Up / Down", "imagined steps before re-grounding (0 = pure dream)"),
    ("Tab", "next world"),
    ("M", "human / planner control"),
    ("G", "goal: click a point (reacher, balls) or type a caption, Enter"),
    ("R", "record MP4 with sound on / off"),
    ("P", "screenshot PNG"),
    ("H", "this help"),
    ("1 2 3 4 5", "panels: truth + PSNR, latent PCA, attention, spectrogram, keypoints"),
    ("Esc", "quit"),
]
PANELS = ("truth", "pca", "attention", "spectrogram", "keypoints")


@dataclass
class PlayConfig:
    """How to run the window; `worldmodel play` fills it."""

    worlds: list[str]  # world names (Tab cycles), or one "mjcf" entry with `mjcf`
    ckpts: dict[str, str | None]  # world -> checkpoint/run folder (None: true simulator only)
    mjcf: str | None = None  # a user's MJCF file instead of the bundled worlds
    size: int = 512  # pixels of the main view
    fps: float = 20.0  # control steps per second at speed 1
    seed: int = 0  # episode seed of the true simulator
    horizon: int = 16  # imagined steps before re-grounding; 0 = pure dream after a reset
    headless: bool = False  # dummy video/audio drivers, no pacing
    script: str | None = None  # scripted key events: lines "STEP KEY down|up"
    steps: int | None = None  # stop after this many loop frames (headless)
    record: str | None = None  # headless: MP4 path (a WAV and a PNG are written beside it)
    profile: bool = False  # print per-frame cost (median and p99, by part)
    panels: set[str] = field(default_factory=lambda: {"truth", "spectrogram"})


def read_script(path: str | os.PathLike) -> dict[int, list[tuple[str, Any]]]:
    """Scripted events: {frame: [(key name, down?) | ("click", (x, y))]}, from lines
    `STEP KEY down|up` or `STEP click X Y` (window pixels); errors name the file and line."""
    events: dict[int, list[tuple[str, Any]]] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        click = line.split()
        if len(click) == 4 and click[1] == "click":
            try:
                events.setdefault(int(click[0]), []).append(
                    ("click", (int(click[2]), int(click[3])))
                )
                continue
            except ValueError:
                raise ValueError(f"{path}:{n}: expected 'STEP click X Y', got {line!r}") from None
        parts = line.rsplit(maxsplit=1)
        head = parts[0].split(maxsplit=1) if len(parts) == 2 else []
        if len(head) != 2 or parts[1] not in ("down", "up") or not head[0].isdigit():
            raise ValueError(
                f"{path}:{n}: expected 'STEP KEY down|up' (e.g. '12 right down'), got {line!r}"
            )
        events.setdefault(int(head[0]), []).append((head[1], parts[1] == "down"))
    return events


class Viewer:
    """One window, one world at a time, the dream beside the truth."""

    def __init__(self, cfg: PlayConfig) -> None:
        if cfg.headless:
            os.environ["SDL_VIDEODRIVER"] = "dummy"
            os.environ["SDL_AUDIODRIVER"] = "dummy"
        import pygame

        self.pg = pygame
        self.cfg = cfg
        no_display = sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        )
        if no_display and not cfg.headless and os.environ.get("SDL_VIDEODRIVER") != "dummy":
            # SDL would quietly fall back to an invisible off-screen window.
            raise RuntimeError(
                "no display (DISPLAY and WAYLAND_DISPLAY are unset); run headless: worldmodel "
                "play --headless --world NAME --steps 300 --record out.mp4"
            )
        try:
            pygame.display.init()
            self.screen = pygame.display.set_mode(self._window_size(), pygame.RESIZABLE)
        except pygame.error as e:
            raise RuntimeError(
                f"cannot open a window ({e}); without a display, run headless: "
                f"worldmodel play --headless --world NAME --steps 300 --record out.mp4"
            ) from None
        pygame.display.set_caption("worldmodel")
        pygame.font.init()
        self.font = pygame.font.Font(None, 20)
        self.big = pygame.font.Font(None, 26)
        self.audio = self._init_audio()
        self.joystick = self._init_joystick()
        self.script = read_script(cfg.script) if cfg.script else {}
        self.held: set[str] = set()
        self.paused = False
        self.step_once = False
        self.speed = 1.0
        self.show_help = False
        self.panels = set(cfg.panels)
        self.world_index = 0
        self.frame_no = 0
        self.recording: dict[str, list] | None = {"frames": [], "audio": []} if cfg.record else None
        self.timings: dict[str, list[float]] = {k: [] for k in ("model", "decode", "draw", "audio")}
        self.messages: list[str] = []
        self._last_sample = 0.0
        self.controller = "human"  # or "planner" (M)
        self.goal_mode = False  # G: the next click or typed line sets the planner's goal
        self.typed = ""
        self._load_world()

    # --- set-up ---------------------------------------------------------------------------------
    def _window_size(self) -> tuple[int, int]:
        return self.cfg.size + 268, self.cfg.size + 96

    def _init_audio(self):
        pg = self.pg
        try:
            pg.mixer.init(frequency=16000, size=-16, channels=1, buffer=512)
            return pg.mixer.Channel(0)
        except pg.error as e:
            print(f"no audio device ({e}): running silent", file=sys.stderr)
            return None

    def _init_joystick(self):
        pg = self.pg
        try:
            pg.joystick.init()
            return pg.joystick.Joystick(0) if pg.joystick.get_count() else None
        except pg.error:
            return None

    def _load_world(self) -> None:
        import sims

        name = self.cfg.worlds[self.world_index]
        self.world = sims.make(mjcf=self.cfg.mjcf) if self.cfg.mjcf else sims.make(name)
        self.imaginer = None
        self.control = None
        self.controller, self.goal_mode = "human", False
        ckpt = self.cfg.ckpts.get(name)
        if ckpt:
            from worldmodel.checkpoint import load
            from worldmodel.imagine import Imaginer

            loaded = load(ckpt)
            if loaded.config["world"] != self.world.name:
                raise ValueError(
                    f"{ckpt}: a checkpoint of {loaded.config['world']!r}, "
                    f"not of {self.world.name!r}"
                )
            self.imaginer = Imaginer(loaded)
        else:
            self.messages = [
                f"no checkpoint for {name}: showing the true simulator.",
                f"train one: worldmodel record --world {name} --episodes 200 "
                f"--out data/{name} && worldmodel train --data data/{name} "
                f"--out runs/{name} --preset small",
            ]
            print("\n".join(self.messages), file=sys.stderr)
        print(
            f"{name}: keys "
            + ", ".join(
                f"{k}: {self.world.action_spec.names[i]} {'+' if s > 0 else '-'}"
                for k, (i, s) in self.world.keys.items()
            )
        )
        self.reset()

    def reset(self) -> None:
        """Restart the true simulator and re-encode the dream from it."""
        self.true_obs, _ = self.world.reset(self.cfg.seed)
        self.prev_obs = self.true_obs  # the truth one step before (a motion model's input)
        self.step_no = 0
        self.since_ground = 0
        self.action = np.zeros(self.world.action_spec.shape, np.float32)
        self.psnr: deque[float] = deque(maxlen=200)
        self.latents: deque[np.ndarray] = deque(maxlen=300)
        self.logmels: deque[np.ndarray] = deque(maxlen=48)
        self.attention = None
        self.shown = dict(self.true_obs)
        if self.imaginer is not None:
            self.carry = self.imaginer.initial(self._encode_truth())
            self.shown = self.imaginer.decode(self.carry[1])[0]

    def _encode_truth(self):
        """The true simulator's current observation as a latent (and its attention map)."""
        z, attn = self.imaginer.encode([self.true_obs], previous=[self.prev_obs])
        self.attention = np.asarray(attn[0, -1].mean(0))
        return z

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> int:
        pg = self.pg
        clock = pg.time.Clock()
        running = True
        while running:
            for name, down in self.script.get(self.frame_no, []):
                if name == "click":
                    pg.event.post(pg.event.Event(pg.MOUSEBUTTONDOWN, pos=down, button=1))
                    continue
                code = pg.key.key_code(name)
                char = name if len(name) == 1 else " " if name == "space" else ""
                kind = pg.KEYDOWN if down else pg.KEYUP
                pg.event.post(pg.event.Event(kind, key=code, unicode=char))
            for event in pg.event.get():
                running = self.handle(event) and running
            if running and (not self.paused or self.step_once):
                self.advance()
                self.step_once = False
            t = time.perf_counter()
            self.draw()
            self.timings["draw"].append(time.perf_counter() - t)
            self.frame_no += 1
            if self.cfg.steps is not None and self.frame_no >= self.cfg.steps:
                running = False
            if not self.cfg.headless:
                clock.tick(self.cfg.fps * self.speed)
        self.finish()
        return 0

    def handle(self, event) -> bool:
        """Apply one pygame event; False means quit."""
        pg = self.pg
        if event.type == pg.QUIT:
            return False
        if event.type == pg.VIDEORESIZE and not self.cfg.headless:
            self.screen = pg.display.set_mode((max(event.w, 320), max(event.h, 240)), pg.RESIZABLE)
        if event.type == pg.KEYUP:
            self.held.discard(pg.key.name(event.key))
        if event.type == pg.MOUSEBUTTONDOWN and self.goal_mode and self.control is not None:
            x, y = event.pos
            size = self.cfg.size
            if 8 <= x < 8 + size and 8 <= y < 8 + size:
                self.messages = [self.control.set_point((x - 8) / size, (y - 8) / size)]
                self.goal_mode = False
                if self.world.name == "reacher":
                    self._reground()  # the dream must see the moved target
            return True
        if event.type != pg.KEYDOWN:
            return True
        key = pg.key.name(event.key)
        if self.goal_mode:
            return self._type(key, getattr(event, "unicode", ""))
        self.held.add(key)
        if key == "escape":
            return False
        if key == "space":
            self.paused = not self.paused
        elif key == "right" and self.paused:
            self.step_once = True
        elif key == "backspace":
            self.reset()
        elif key in ("+", "=", "[+]"):
            self.speed = min(self.speed * 2, 8.0)
        elif key in ("-", "[-]"):
            self.speed = max(self.speed / 2, 0.125)
        elif key == "up":
            self.cfg.horizon += 1
        elif key == "down":
            self.cfg.horizon = max(0, self.cfg.horizon - 1)
        elif key == "tab":
            self.world_index = (self.world_index + 1) % len(self.cfg.worlds)
            self._load_world()
        elif key == "m":
            self._toggle_planner()
        elif key == "g":
            if self._toggle_planner(on=True):
                self.goal_mode, self.typed = True, ""
                self.messages = ["goal: click a point in the view, or type a caption and Enter"]
        elif key == "r":
            self._toggle_recording()
        elif key == "p":
            path = Path(f"screenshot_{int(time.time())}_{self.frame_no}.png")
            pg.image.save(self.screen, str(path))
            self.messages = [f"saved {path}"]
        elif key == "h":
            self.show_help = not self.show_help
        elif key in ("1", "2", "3", "4", "5"):
            self.panels ^= {PANELS[int(key) - 1]}
        return True

    def _toggle_planner(self, on: bool | None = None) -> bool:
        """Switch human / planner control (`on` forces planner); False without a model."""
        if self.imaginer is None:
            self.messages = ["the planner plans in the dream: it needs a checkpoint"]
            return False
        if self.control is None:
            from viewer.control import PlannerControl

            self.control = PlannerControl(self.imaginer, self.world)
        want = on if on is not None else self.controller == "human"
        self.controller = "planner" if want else "human"
        self.messages = [f"control: {self.control.label if want else 'human'}"]
        return True

    def _type(self, key: str, char: str) -> bool:
        """A key while a goal caption is typed: Enter sets it, Escape cancels."""
        if key in ("return", "enter"):
            self.goal_mode = False
            if self.typed.strip():
                self.messages = [self.control.set_caption(self.typed.strip())]
        elif key == "escape":
            self.goal_mode, self.messages = False, ["goal unchanged"]
        elif key == "backspace":
            self.typed = self.typed[:-1]
        elif char and char.isprintable():
            self.typed += char
        return True

    def _reground(self) -> None:
        self.true_obs = self.prev_obs = self.world.observe()
        if self.imaginer is not None:
            self.carry = self.imaginer.ground(self.carry, self._encode_truth())
            self.since_ground = 0

    def current_action(self) -> np.ndarray:
        if self.controller == "planner" and self.control is not None:
            return self.control.act(self.carry)
        action = self.world.action_from_keys(self.held)
        if self.joystick is not None and self.joystick.get_numaxes() >= 1:
            axes = [
                self.joystick.get_axis(i)
                for i in range(min(self.joystick.get_numaxes(), len(action)))
            ]
            lo, hi = self.world.action_spec.low, self.world.action_spec.high
            for i, a in enumerate(axes):
                if abs(a) > 0.15:
                    action[i] = (lo[i] + hi[i]) / 2 + a * (hi[i] - lo[i]) / 2
        return action

    def advance(self) -> None:
        """One control step of the truth and of the dream under the same action."""
        self.action = self.current_action()
        self.prev_obs = self.true_obs
        self.true_obs, _, terminated, _, _ = self.world.step(self.action)
        self.step_no += 1
        if self.imaginer is None:
            self.shown = dict(self.true_obs)
        else:
            t = time.perf_counter()
            self.carry = self.imaginer.step(self.carry, self.action)
            self.since_ground += 1
            if self.cfg.horizon and self.since_ground >= self.cfg.horizon:
                self.carry = self.imaginer.ground(self.carry, self._encode_truth())
                self.since_ground = 0
            elif "attention" in self.panels:
                self._encode_truth()  # the panel shows how the backbone reads the truth now
            jax.block_until_ready(self.carry)  # JAX is asynchronous: time the step, not its launch
            self.timings["model"].append(time.perf_counter() - t)
            t = time.perf_counter()
            self.shown = self.imaginer.decode(self.carry[1])[0]
            self.timings["decode"].append(time.perf_counter() - t)
            self.latents.append(np.asarray(self.carry[1][0]))
            mse = np.mean((self.shown["frame"] / 255.0 - self.true_obs["frame"] / 255.0) ** 2)
            self.psnr.append(10 * np.log10(1.0 / max(mse, 1e-10)))
        if "logmel" in self.shown:
            self.logmels.append(self.shown["logmel"])
        t = time.perf_counter()
        self._play(self.shown["audio"])
        self.timings["audio"].append(time.perf_counter() - t)
        if terminated:
            self.messages = [f"the episode ended ({self.true_obs['caption']}); reset"]
            self.reset()

    def _play(self, audio: np.ndarray) -> None:
        chunk = np.nan_to_num(np.asarray(audio, np.float32))
        # Each step's sound is decoded on its own; glide from where the last chunk ended so the
        # junction has no jump (a jump is what a click is), without dipping the level.
        ramp = np.linspace(1.0, 0.0, 48, dtype=np.float32)
        chunk[:48] += (self._last_sample - chunk[0]) * ramp
        self._last_sample = float(chunk[-1])
        pcm = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)
        if self.recording is not None:
            self.recording["audio"].append(pcm)
        if self.audio is None:
            return
        sound = self.pg.sndarray.make_sound(pcm)
        if not self.audio.get_busy():
            self.audio.play(sound)
        elif self.audio.get_queue() is None:
            self.audio.queue(sound)  # one chunk ahead: gapless; faster than real time drops chunks

    # --- drawing --------------------------------------------------------------------------------
    def draw(self) -> None:
        from viewer import panels as P

        pg, s, f = self.pg, self.screen, self.font
        s.fill(P.BG)
        size = self.cfg.size
        P.blit_array(s, self.shown["frame"], pg.Rect(8, 8, size, size))
        y = size + 14
        caption = self.shown.get("caption") or "(nothing happens)"
        for line in P.wrap(self.big, caption, size)[:2]:
            y = P.text(s, self.big, line, (12, y), P.FG if self.shown.get("caption") else P.DIM)
        mode = "dream" if self.imaginer is not None else "true simulator"
        fps = 1.0 / max(statistics.mean(self.timings["draw"][-20:] or [1.0]), 1e-6)
        hud = (
            f"{self.world.name} | {mode} | step {self.step_no} | {fps:.0f} fps | "
            f"speed x{self.speed:g} | action {np.round(self.action, 2).tolist()} | "
            f"{self.control.label if self.controller == 'planner' else 'human'} | "
            f"horizon {self.since_ground}/{self.cfg.horizon or 'inf'}"
            f"{' | PAUSED' if self.paused else ''}{' | REC' if self.recording else ''}"
        )
        P.text(s, f, hud, (12, size + 68), P.DIM)
        if self.goal_mode:
            P.text(s, self.big, f"goal> {self.typed}_", (12, size + 40), P.ACCENT)
        if self.controller == "planner" and self.control is not None:
            self._draw_plan(P, size)
        if "keypoints" in self.panels and self.imaginer is not None:
            # Where the imagined latent holds its keypoints, over the imagined frame.
            for i, (u, v) in enumerate(self.imaginer.keypoints(self.carry[1])[0]):
                centre = (8 + int((u + 1) / 2 * size), 8 + int((v + 1) / 2 * size))
                pg.draw.circle(s, P.ACCENT, centre, 7, 2)
                P.text(s, f, str(i), (centre[0] + 8, centre[1] - 8), P.ACCENT)
        x, y = size + 16, 8
        w = 244
        # Panels share the column: with all four open the truth shrinks so everything fits.
        side = w if len(self.panels) < 4 else 180
        if "truth" in self.panels:
            P.text(s, f, "true simulator", (x, y), P.DIM)
            P.blit_array(s, self.true_obs["frame"], pg.Rect(x, y + 18, side, side))
            y += side + 22
            P.plot(s, f, pg.Rect(x, y, w, 60), "dream vs truth PSNR (dB)", list(self.psnr))
            y += 66
        if "pca" in self.panels:
            P.trajectory(s, f, pg.Rect(x, y, w, 90), list(self.latents))
            y += 96
        if "attention" in self.panels and self.attention is not None:
            from worldmodel.encoders import token_labels

            P.heatmap(
                s,
                f,
                pg.Rect(x, y, w, 120),
                "attention",
                self.attention,
                token_labels(self.imaginer.cfg),
            )
            y += 126
        if "spectrogram" in self.panels:
            P.spectrogram(s, f, pg.Rect(x, y, w, 80), list(self.logmels))
        yy = 12
        for m in self.messages:
            for line in P.wrap(f, m, size - 16):
                yy = P.text(s, f, line, (16, yy), P.ACCENT)
        if self.show_help:
            pg.draw.rect(s, (10, 10, 14), pg.Rect(40, 40, size - 80, 40 + 22 * len(HELP)))
            yy = 52
            for k, what in HELP + [
                (k, f"{self.world.action_spec.names[i]} {'+' if v > 0 else '-'}")
                for k, (i, v) in self.world.keys.items()
            ]:
                P.text(s, f, k, (56, yy), P.ACCENT)
                yy = P.text(s, f, what, (170, yy))
        pg.display.flip()
        if self.recording is not None and (not self.paused or self.step_once):
            self.recording["frames"].append(pg.surfarray.array3d(s).swapaxes(0, 1).copy())

    def _draw_plan(self, P, size: int) -> None:
        """The goal point and the planner's sampled futures (their last imagined frames)."""
        pg, s = self.pg, self.screen
        goal = self.control.goal
        if goal is not None and goal[0] == "point":
            from viewer.control import pixel_to_plane

            origin = pixel_to_plane(self.world, 0.0, 0.0)
            extent = float(self.world.model.cam_fovy[self.world.model.camera(self.world.camera).id])
            u = (goal[1][0] - origin[0]) / extent
            v = (origin[1] - goal[1][1]) / extent
            pg.draw.circle(s, P.ACCENT, (8 + int(u * size), 8 + int(v * size)), 10, 2)
        thumb = size // 6
        for i, frame in enumerate(self.control.futures):
            rect = pg.Rect(8 + size - (thumb + 4) * (i + 1), 8 + 4, thumb, thumb)
            P.blit_array(s, frame, rect)
            pg.draw.rect(s, P.ACCENT if i == 0 else P.DIM, rect, 1)
        P.text(s, self.font, "planned futures", (8 + size - 4 * (thumb + 4), 8 + thumb + 8), P.DIM)

    # --- recording ------------------------------------------------------------------------------
    def _toggle_recording(self) -> None:
        if self.recording is None:
            self.recording = {"frames": [], "audio": []}
            self.messages = ["recording..."]
        else:
            path = Path(f"recording_{int(time.time())}.mp4")
            write_video(path, self.recording["frames"], self.recording["audio"], self.cfg.fps)
            self.recording = None
            self.messages = [f"saved {path}"]

    def finish(self) -> None:
        """Write the headless outputs and the profile; close the window."""
        if self.cfg.record and self.recording is not None:
            out = Path(self.cfg.record)
            write_video(out, self.recording["frames"], self.recording["audio"], self.cfg.fps)
            write_wav(out.with_suffix(".wav"), self.recording["audio"])
            self.pg.image.save(self.screen, str(out.with_suffix(".png")))
            print(f"wrote {out}, {out.with_suffix('.wav')}, {out.with_suffix('.png')}")
        if self.cfg.profile:
            print(profile_table(self.timings))
        self.pg.quit()


def profile_table(timings: dict[str, list[float]]) -> str:
    """Median and p99 milliseconds per frame, by part and in total (model + decode + draw)."""
    lines = [f"{'part':<8}{'median ms':>10}{'p99 ms':>9}{'frames':>8}"]
    for k, v in timings.items():
        if v:
            ms = np.array(v[2:] or v) * 1e3  # the first frames include compilation
            lines.append(f"{k:<8}{np.median(ms):>10.2f}{np.percentile(ms, 99):>9.2f}{len(v):>8}")
    return "\n".join(lines)


def frame_cost(timings: dict[str, list[float]]) -> dict[str, float]:
    """Per-frame model + decode + draw cost in ms: median and p99 over the session."""
    n = min(len(timings["draw"]), *(len(timings[k]) or 10**9 for k in ("model", "decode")))
    parts = [np.array(timings[k][-n:]) for k in ("model", "decode", "draw") if timings[k]]
    total = np.sum(parts, 0)[2:] * 1e3
    return {"median": float(np.median(total)), "p99": float(np.percentile(total, 99))}


def write_wav(path: Path, chunks: list[np.ndarray], rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.concatenate(chunks).astype(np.int16).tobytes() if chunks else b"")


def write_video(path: Path, frames: list[np.ndarray], audio: list[np.ndarray], fps: float) -> None:
    """MP4 (H.264) of the window with the sound as an AAC track, by imageio-ffmpeg's own ffmpeg."""
    import imageio.v2 as iio
    import imageio_ffmpeg

    if not frames:
        return
    tmp_video = path.with_suffix(".video.mp4")
    tmp_audio = path.with_suffix(".audio.wav")
    with iio.get_writer(tmp_video, fps=fps, codec="libx264", quality=7, macro_block_size=8) as w:
        for frame in frames:
            w.append_data(frame)
    write_wav(tmp_audio, audio)
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-y",
        "-loglevel",
        "error",
        "-i",
        str(tmp_video),
        "-i",
        str(tmp_audio),
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-shortest",
        str(path),
    ]
    subprocess.run(cmd, check=True)
    tmp_video.unlink()
    tmp_audio.unlink()


def main(argv: list[str] | None = None) -> int:
    """`python -m viewer`: the same as `worldmodel play`."""
    from worldmodel.cli import main as cli

    return cli(["play", *(argv if argv is not None else sys.argv[1:])])


def play(cfg: PlayConfig) -> dict[str, Any]:
    """Run a session; returns its frame cost (ms) and frame count."""
    viewer = Viewer(cfg)
    viewer.run()
    return {
        "frames": viewer.frame_no,
        **(frame_cost(viewer.timings) if viewer.timings["model"] else {}),
    }
