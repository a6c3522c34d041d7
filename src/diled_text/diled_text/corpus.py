"""A tiny built-in corpus of short rated sentences, made from templates (no files, no downloads).

For tests and the CPU smoke config: ``n`` distinct sentences such as "the soup was really great ."
with label 1.0 (positive adjective) or 0.0 (negative), drawn with a local seeded generator.
"""

from __future__ import annotations

import random

from .records import TextRecord

__all__ = ["tiny_corpus"]

_SUBJECTS = [
    "the food",
    "the movie",
    "the service",
    "this book",
    "the hotel",
    "our trip",
    "the music",
    "the staff",
    "the pizza",
    "the game",
    "my phone",
    "the coffee",
    "the room",
    "the show",
]
_VERBS = ["was", "is", "seemed", "felt", "looked"]
_ADVERBS = ["", "really ", "very ", "quite ", "so ", "truly "]
_POSITIVE = ["great", "good", "lovely", "amazing", "fun", "nice", "perfect", "wonderful"]
_NEGATIVE = ["bad", "awful", "boring", "terrible", "poor", "dull", "rude", "horrible"]
_ENDINGS = [" .", " !", " today .", " again .", " as always ."]


def tiny_corpus(n: int = 400, seed: int = 0) -> list[TextRecord]:
    """``n`` distinct template sentences with a sentiment label (ids ``tiny:<i>``)."""
    total = len(_SUBJECTS) * len(_VERBS) * len(_ADVERBS) * (len(_POSITIVE) + len(_NEGATIVE)) * len(_ENDINGS)
    if not 0 < n <= total:
        raise ValueError(f"tiny_corpus: n must be in 1 … {total} (got {n})")
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        positive = rng.random() < 0.5
        adjective = rng.choice(_POSITIVE if positive else _NEGATIVE)
        subject, verb, adverb = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_ADVERBS)
        text = f"{subject} {verb} {adverb}{adjective}{rng.choice(_ENDINGS)}"
        if text not in seen:
            seen.add(text)
            out.append(TextRecord(f"tiny:{len(out)}", text, 1.0 if positive else 0.0))
    return out
