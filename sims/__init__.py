"""Worlds that can be seen, heard and read: MuJoCo models with frames, sound, captions, proprio."""

from __future__ import annotations

import os

from sims.balls import Balls
from sims.cartpole import Cartpole
from sims.reacher import Reacher
from sims.world import ActionSpec, World, WorldError

WORLDS: dict[str, type[World]] = {"balls": Balls, "reacher": Reacher, "cartpole": Cartpole}


def make(name: str | None = None, *, mjcf: str | os.PathLike | None = None, **options) -> World:
    """A bundled world by `name`, or any MJCF file as a generic world (`mjcf=`)."""
    if (name is None) == (mjcf is None):
        raise WorldError("give a world name or an MJCF path (exactly one)")
    if mjcf is not None:
        return World(mjcf, **options)
    if name not in WORLDS:
        raise WorldError(f"unknown world {name!r}; bundled worlds: {', '.join(WORLDS)}")
    return WORLDS[name](**options)


__all__ = ["WORLDS", "ActionSpec", "World", "WorldError", "make"]
