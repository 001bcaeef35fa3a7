"""Drawing helpers for the viewer's panels: frames, text, line plots, trajectories, heat maps."""

from __future__ import annotations

import numpy as np
import pygame

BG = (18, 20, 26)
FG = (225, 228, 235)
DIM = (140, 146, 160)
ACCENT = (240, 120, 60)
MODALITY_COLORS = {
    "summary": (240, 240, 240),
    "frame": (90, 160, 250),
    "audio": (250, 190, 70),
    "caption": (120, 220, 140),
    "proprio": (230, 110, 200),
}


def blit_array(surface: pygame.Surface, image: np.ndarray, rect: pygame.Rect) -> None:
    """Draw an image uint8[H, W, 3] scaled (nearest) into `rect`."""
    small = pygame.surfarray.make_surface(np.ascontiguousarray(image.swapaxes(0, 1)))
    surface.blit(pygame.transform.scale(small, rect.size), rect.topleft)


def text(
    surface: pygame.Surface,
    font: pygame.font.Font,
    s: str,
    pos: tuple[int, int],
    color: tuple[int, int, int] = FG,
) -> int:
    """Draw one line of text; returns the y below it."""
    img = font.render(s, True, color)
    surface.blit(img, pos)
    return pos[1] + img.get_height() + 2


def wrap(font: pygame.font.Font, s: str, width: int) -> list[str]:
    """Greedy word wrap to a pixel width."""
    lines, line = [], ""
    for word in s.split():
        trial = f"{line} {word}".strip()
        if font.size(trial)[0] > width and line:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def plot(
    surface: pygame.Surface,
    font: pygame.font.Font,
    rect: pygame.Rect,
    title: str,
    values: list[float],
    color=ACCENT,
) -> None:
    """A small line plot of the latest values with its title and range."""
    pygame.draw.rect(surface, (30, 33, 42), rect)
    text(surface, font, title, (rect.x + 4, rect.y + 2), DIM)
    vals = [v for v in values if np.isfinite(v)]
    if len(vals) < 2:
        return
    lo, hi = min(vals), max(vals)
    hi = hi if hi > lo else lo + 1.0
    inner = rect.inflate(-8, -22).move(0, 8)
    n = len(vals)
    pts = [
        (inner.x + inner.w * i / (n - 1), inner.bottom - inner.h * (v - lo) / (hi - lo))
        for i, v in enumerate(vals)
    ]
    pygame.draw.lines(surface, color, False, pts, 2)
    text(surface, font, f"{vals[-1]:.1f}", (rect.right - 40, rect.y + 2), color)


def trajectory(
    surface: pygame.Surface, font: pygame.font.Font, rect: pygame.Rect, latents: list[np.ndarray]
) -> None:
    """The session's latents projected on their first two principal components."""
    pygame.draw.rect(surface, (30, 33, 42), rect)
    text(surface, font, "latent PCA", (rect.x + 4, rect.y + 2), DIM)
    z = np.stack(latents) if latents else np.zeros((0, 1))
    z = z[np.all(np.isfinite(z), 1) & (np.abs(z).max(1, initial=0) < 1e6)]  # a diverged dream
    if len(z) < 3:
        return
    z = z - z.mean(0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    xy = z @ vt[:2].T
    if xy.shape[1] < 2:
        xy = np.concatenate([xy, np.zeros_like(xy)], 1)
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi - lo > 1e-9, hi - lo, 1.0)
    inner = rect.inflate(-12, -26).move(0, 8)
    unit = np.clip(np.nan_to_num((xy[:, :2] - lo[:2]) / span[:2]), 0.0, 1.0)
    pts = [(inner.x + int(inner.w * u), inner.y + int(inner.h * v)) for u, v in unit]
    pygame.draw.lines(surface, (110, 150, 230), False, pts, 1)
    pygame.draw.circle(surface, ACCENT, pts[-1], 4)


def heatmap(
    surface: pygame.Surface,
    font: pygame.font.Font,
    rect: pygame.Rect,
    title: str,
    matrix: np.ndarray,
    labels: list[str] | None = None,
) -> None:
    """A matrix as an image (brighter = larger), with modality colour bars along both edges."""
    pygame.draw.rect(surface, (30, 33, 42), rect)
    text(surface, font, title, (rect.x + 4, rect.y + 2), DIM)
    m = np.asarray(matrix, np.float64)
    m = (m - m.min()) / max(m.max() - m.min(), 1e-9)
    img = (np.stack([m * 255, m * 200, m * 120], -1)).astype(np.uint8)
    inner = pygame.Rect(rect.x + 8, rect.y + 20, rect.w - 12, rect.h - 24)
    blit_array(surface, img, inner)
    if labels:
        n = len(labels)
        for i, label in enumerate(labels):
            color = MODALITY_COLORS.get(label.split(":")[0], DIM)
            y0 = inner.y + inner.h * i / n
            pygame.draw.line(surface, color, (rect.x + 3, y0), (rect.x + 3, y0 + inner.h / n), 4)
        seen = []
        for label in labels:
            name = label.split(":")[0]
            if name not in seen:
                seen.append(name)
        x = rect.x + 8 + font.size(title)[0] + 10
        for name in seen:
            text(surface, font, name, (x, rect.y + 2), MODALITY_COLORS.get(name, DIM))
            x += font.size(name)[0] + 8


def spectrogram(
    surface: pygame.Surface, font: pygame.font.Font, rect: pygame.Rect, logmels: list[np.ndarray]
) -> None:
    """Recent log-mel frames, time to the right, low frequencies at the bottom."""
    pygame.draw.rect(surface, (30, 33, 42), rect)
    text(surface, font, "predicted sound (log-mel)", (rect.x + 4, rect.y + 2), DIM)
    if not logmels:
        return
    spec = np.nan_to_num(np.concatenate(logmels, 0), nan=-11.5)  # [frames, mels]
    v = np.clip((spec + 11.5) / 14.0, 0.0, 1.0).T[::-1]
    img = np.stack([v * 255, v * 170 + 30 * (1 - v), 60 + 80 * (1 - v)], -1).astype(np.uint8)
    blit_array(surface, img, pygame.Rect(rect.x + 4, rect.y + 20, rect.w - 8, rect.h - 24))
