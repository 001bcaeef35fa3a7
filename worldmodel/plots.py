"""Small line plots drawn with pygame (already a dependency) and saved as PNG: no display needed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame

COLORS = {
    "model": (230, 60, 50),
    "copy_last": (60, 120, 230),
    "mean_frame": (60, 170, 80),
    "silence": (150, 110, 200),
    "empty_caption": (230, 160, 40),
}


def line_panel(
    surface: pygame.Surface,
    rect: pygame.Rect,
    title: str,
    series: dict[str, list[float]],
    font: pygame.font.Font,
) -> None:
    """Draw one titled panel of lines (x = 1..n) with its y-range and a legend."""
    pygame.draw.rect(surface, (255, 255, 255), rect)
    pygame.draw.rect(surface, (120, 120, 120), rect, 1)
    surface.blit(font.render(title, True, (20, 20, 20)), (rect.x + 6, rect.y + 4))
    values = [v for s in series.values() for v in s if v == v]
    if not values:
        return
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    plot = pygame.Rect(rect.x + 44, rect.y + 24, rect.w - 54, rect.h - 44)
    surface.blit(font.render(f"{hi:.3g}", True, (90, 90, 90)), (rect.x + 4, plot.y - 6))
    surface.blit(font.render(f"{lo:.3g}", True, (90, 90, 90)), (rect.x + 4, plot.bottom - 8))
    for i, (name, ys) in enumerate(series.items()):
        n = len(ys)
        pts = [
            (plot.x + plot.w * (j / max(n - 1, 1)), plot.bottom - plot.h * (y - lo) / (hi - lo))
            for j, y in enumerate(ys)
        ]
        color = COLORS.get(name, (0, 0, 0))
        if len(pts) > 1:
            pygame.draw.lines(surface, color, False, pts, 2)
        surface.blit(font.render(name, True, color), (plot.right - 90, plot.y + 2 + 13 * i))
    surface.blit(
        font.render(f"horizon 1..{len(next(iter(series.values())))}", True, (90, 90, 90)),
        (plot.x, plot.bottom + 4),
    )


def metric_plots(metrics: dict[str, Any], path: str | os.PathLike) -> None:
    """One panel per metric against horizon, the model beside each baseline that scores it."""
    pygame.font.init()
    font = pygame.font.Font(None, 18)
    keys = list(metrics["model"])
    cols, w, h = 3, 360, 220
    rows = (len(keys) + cols - 1) // cols
    surface = pygame.Surface((cols * w, rows * h))
    surface.fill((235, 235, 235))
    for i, key in enumerate(keys):
        series = {"model": metrics["model"][key]}
        series.update(
            {b: v[key] for b, v in metrics["baselines"].items() if v.get(key) is not None}
        )
        line_panel(
            surface,
            pygame.Rect((i % cols) * w + 4, (i // cols) * h + 4, w - 8, h - 8),
            key,
            series,
            font,
        )
    pygame.image.save(surface, str(Path(path)))


def text_panel(lines: list[str], width: int, height: int) -> np.ndarray:
    """Lines of text, wrapped, on a dark panel: uint8[height, width, 3] (GIF captions, goals)."""
    pygame.font.init()
    font = pygame.font.Font(None, 24)
    surface = pygame.Surface((width, height))
    surface.fill((24, 24, 28))
    y = 10
    for line in lines:
        words, row = line.split(), ""
        for word in words:
            trial = f"{row} {word}".strip()
            if font.size(trial)[0] > width - 20 and row:
                surface.blit(font.render(row, True, (235, 235, 235)), (10, y))
                y, row = y + 24, word
            else:
                row = trial
        surface.blit(font.render(row, True, (235, 235, 235)), (10, y))
        y += 32
    return np.ascontiguousarray(pygame.surfarray.array3d(surface).transpose(1, 0, 2))
