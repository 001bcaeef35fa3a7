"""Captions of what happened in a control step: events become clauses, clauses become text and
tokens.

Each world has a fixed vocabulary (every word its templates and body names can produce), so captions
are tokenised without surprises and a model's caption head has a fixed output size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

PAD, EOS = 0, 1
SPECIALS = ("<pad>", "<eos>")
MAX_TOKENS = 16  # words plus <eos>; two clauses of six words fit
MAX_CLAUSES = 2

# Event types and the verb that marks each in a caption; `event_types` reads them back from text.
VERBS = {
    "hits": "impact",
    "moves": "motion",
    "turns": "motion",
    "swings": "motion",
    "reaches": "reach",
    "falls": "fall",
}
BASE_WORDS = ("the", "and", "hits", "moves", "slowly", "quickly", "its", "limit")


@dataclass
class Event:
    """One thing that happened in a step; `text` is its caption clause ("" if untold)."""

    type: str  # impact | contact_end | limit | motion | reach | fall
    text: str
    speed: float = 0.0
    substep: int = 0
    priority: int = 1  # lower is told first: task events 0, impacts 1, motion 2
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A plain, JSON-friendly record for `info["events"]`."""
        return {
            "type": self.type,
            "text": self.text,
            "speed": round(float(self.speed), 4),
            "substep": self.substep,
            **self.data,
        }


def phrase(name: str) -> str:
    """A MuJoCo name as caption words: "red_ball" -> "the red ball"."""
    words = [w for w in re.split(r"[^0-9a-zA-Z]+", name.lower()) if w]
    return "the " + " ".join(words) if words else ""


def compose(events: list[Event]) -> str:
    """The step's caption: the most salient clauses (task, then impacts by speed, then motion)."""
    told = sorted((e for e in events if e.text), key=lambda e: (e.priority, -e.speed))
    clauses: list[str] = []
    for e in told:
        if e.text not in clauses:
            clauses.append(e.text)
        if len(clauses) == MAX_CLAUSES:
            break
    return " and ".join(clauses)


SALIENCE = (
    "fall",
    "reach",
    "impact",
    "motion",
)  # which event names a step when a caption has several


def primary_event(caption: str) -> str:
    """The step's most salient event type, or "none" for an empty caption."""
    kinds = event_types(caption)
    return next((k for k in SALIENCE if k in kinds), "none")


def event_types(caption: str) -> set[str]:
    """The event types a caption reports, read from its verbs (empty for "")."""
    return {VERBS[w] for w in caption.split() if w in VERBS}


class Vocabulary:
    """A fixed word list; token 0 is padding, 1 ends the caption."""

    def __init__(self, words: list[str] | tuple[str, ...]) -> None:
        uniq = sorted(set(words) - set(SPECIALS))
        self.words: tuple[str, ...] = SPECIALS + tuple(uniq)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str, length: int = MAX_TOKENS) -> np.ndarray:
        """int32[length]: word ids, <eos>, then <pad>; raises on a word outside the vocabulary."""
        words = caption.split()
        if len(words) >= length:
            raise ValueError(
                f"caption {caption!r} has {len(words)} words; at most {length - 1} fit"
            )
        try:
            ids = [self.index[w] for w in words]
        except KeyError as e:
            raise ValueError(
                f"caption {caption!r}: word {e.args[0]!r} is not in the vocabulary"
            ) from None
        out = np.full(length, PAD, dtype=np.int32)
        out[: len(ids)] = ids
        out[len(ids)] = EOS
        return out

    def decode(self, tokens: np.ndarray) -> str:
        """Text up to the first <eos> (padding and unknown ids skipped)."""
        words = []
        for t in np.asarray(tokens).tolist():
            if t == EOS:
                break
            if PAD < t < len(self.words) and t != EOS:
                words.append(self.words[t])
        return " ".join(words)
