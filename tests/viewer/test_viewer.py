"""The window, driven headless as a person would drive it: scripted keys, screenshots, recording."""

import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pygame
import pytest

from viewer.app import PlayConfig, Viewer, read_script


@pytest.fixture(scope="module")
def run(micro_run):
    return micro_run / "run"


def viewer(run, **kw) -> Viewer:
    cfg = PlayConfig(worlds=["balls"], ckpts={"balls": str(run)}, size=256, headless=True, **kw)
    return Viewer(cfg)


def press(v: Viewer, name: str) -> None:
    for kind in (pygame.KEYDOWN, pygame.KEYUP):
        v.handle(pygame.event.Event(kind, key=pygame.key.key_code(name)))


def test_a_scripted_headless_session_writes_video_sound_and_a_screenshot(run, tmp_path):
    script = tmp_path / "keys.txt"
    script.write_text("# push right, then up\n2 d down\n10 d up\n10 w down\n20 w up\n")
    out = tmp_path / "session.mp4"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldmodel.cli",
            "play",
            "--headless",
            "--world",
            "balls",
            "--ckpt",
            str(run),
            "--script",
            str(script),
            "--steps",
            "30",
            "--record",
            str(out),
            "--size",
            "256",
            "--profile",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "frame cost" in result.stdout and "median" in result.stdout
    shot = pygame.image.load(str(out.with_suffix(".png")))
    pixels = pygame.surfarray.array3d(shot)
    assert pixels.std() > 10, "the screenshot is not uniform"
    caption_area = pixels[8:256, 256 + 12 : 256 + 60]
    hud = pixels[8:600, 256 + 66 : 256 + 84]
    background = np.array([18, 20, 26])
    assert (np.abs(caption_area - background).sum(-1) > 60).sum() > 50, "caption text is drawn"
    assert (np.abs(hud - background).sum(-1) > 60).sum() > 50, "the HUD is drawn"
    n_frames = sum(1 for _ in imageio_ffmpeg.read_frames(str(out))) - 1  # first item is metadata
    assert n_frames == 30
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(out)], capture_output=True, text=True
    )
    assert "Audio: aac" in probe.stderr
    import wave

    with wave.open(str(out.with_suffix(".wav"))) as w:
        assert w.getnframes() == 30 * 800 and w.getframerate() == 16000


def test_pause_step_and_reset_do_what_they_say(run):
    v = viewer(run)
    for _ in range(3):
        v.advance()
    assert v.step_no == 3
    press(v, "space")
    assert v.paused
    for _ in range(4):  # frames go by, the world does not
        if not v.paused or v.step_once:
            v.advance()
    assert v.step_no == 3
    press(v, "right")
    assert v.step_once
    v.advance()
    assert v.step_no == 4
    v.cfg.horizon = 0
    press(v, "backspace")
    assert v.step_no == 0 and v.since_ground == 0
    press(v, "up")
    press(v, "up")
    assert v.cfg.horizon == 2
    v.paused = False
    for _ in range(3):
        v.advance()
    assert v.since_ground == 1, "re-grounded after two imagined steps"


def test_thousands_of_random_keys_and_resizes_raise_nothing(run):
    v = viewer(run, steps=1)
    rng = np.random.default_rng(0)
    names = [
        "space",
        "right",
        "backspace",
        "+",
        "-",
        "up",
        "down",
        "m",
        "h",
        "1",
        "2",
        "3",
        "4",
        "5",
        "w",
        "a",
        "s",
        "d",
        "q",
        "x",
        "left",
        "return",
    ]
    for i in range(2000):
        kind = pygame.KEYDOWN if rng.random() < 0.6 else pygame.KEYUP
        v.handle(pygame.event.Event(kind, key=pygame.key.key_code(names[rng.integers(len(names))])))
        if i % 50 == 0:
            v.handle(
                pygame.event.Event(
                    pygame.VIDEORESIZE, w=int(rng.integers(100, 900)), h=int(rng.integers(100, 700))
                )
            )
        if i % 10 == 0:
            if not v.paused:
                v.advance()
            v.draw()


def test_the_keypoints_panel_rings_each_keypoint_of_the_dream(run):
    from viewer.panels import ACCENT

    v = viewer(run, steps=1)
    v.advance()

    def accent_pixels():
        v.draw()
        view = pygame.surfarray.array3d(v.screen)[8 : 8 + v.cfg.size, 8 : 8 + v.cfg.size]
        return int(np.all(view == ACCENT, axis=-1).sum())

    before = accent_pixels()
    press(v, "5")
    kp = v.imaginer.keypoints(v.carry[1])[0]
    assert kp.shape == (v.imaginer.cfg.keypoints, 2) and kp.shape[0] > 0
    after = accent_pixels()
    assert after > before + 20 * len(kp), (before, after)
    u, w = kp[0]
    x, y = 8 + int((u + 1) / 2 * v.cfg.size), 8 + int((w + 1) / 2 * v.cfg.size)
    ring = pygame.surfarray.array3d(v.screen)[x - 8 : x + 9, y - 8 : y + 9]
    assert np.all(ring == ACCENT, axis=-1).any(), "a ring is drawn at the first keypoint"


def test_the_window_opens_on_the_true_simulator_without_a_checkpoint(capsys):
    v = Viewer(PlayConfig(worlds=["cartpole"], ckpts={}, size=128, headless=True))
    v.advance()
    v.draw()
    assert v.imaginer is None and "no checkpoint for cartpole" in capsys.readouterr().err
    assert v.shown["frame"].shape == (64, 64, 3)


def test_a_bad_script_line_is_named(tmp_path):
    bad = tmp_path / "keys.txt"
    bad.write_text("3 right down\nsoon left up\n")
    with pytest.raises(ValueError, match=r"keys.txt:2: expected 'STEP KEY down\|up'"):
        read_script(bad)


def test_without_a_display_the_window_points_at_headless():
    import os

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")
    }
    result = subprocess.run(
        [sys.executable, "-m", "viewer", "--world", "balls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no display" in result.stderr and "--headless" in result.stderr


def test_the_planner_takes_control_and_goals_are_clicked_or_typed(run):
    v = viewer(run)
    press(v, "m")
    assert v.controller == "planner" and "planner" in v.messages[0]
    v.advance()
    assert len(v.control.futures) == 4 and v.control.futures[0].shape == (64, 64, 3)
    assert np.abs(v.action).max() > 0  # the planner chose the action, no key is held
    # G, then a click in the view: the red ball's goal position, inside the arena.
    press(v, "g")
    assert v.goal_mode
    v.handle(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=(8 + 192, 8 + 64), button=1))
    assert not v.goal_mode and v.control.goal[0] == "point"
    x, y = v.control.goal[1]
    assert x > 0.3 and y > 0.3  # right of and above the centre
    v.advance()
    # G, then typing: keys go to the goal line, not to steering; Enter sets it.
    press(v, "g")
    for ch in "the red ball":
        name = "space" if ch == " " else ch
        for kind in (pygame.KEYDOWN, pygame.KEYUP):
            v.handle(pygame.event.Event(kind, key=pygame.key.key_code(name), unicode=ch))
    assert v.typed == "the red ball" and not v.held
    press(v, "return")
    assert v.control.goal == ("caption", "the red ball") and v.control.goal_z is not None
    v.advance()
    v.draw()
    press(v, "m")
    assert v.controller == "human"
    v.finish()
