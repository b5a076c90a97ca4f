"""The one tolerant batch loader: read each source of a batch, keep what loads, report what does not.

Every assembly builds its batches through :func:`load_each` (training and evaluation, every modality), so
a bad sample — an unreadable image, a truncated clip, a malformed label file — drops out of its batch with a
one-line reason instead of stopping the run::

    loaded = load_each(paths, load_image)
    loaded.kept     # indices into ``paths`` that loaded, in order
    loaded.items    # what ``loader`` returned for them
    loaded.errors   # [(index, "file.jpg: not an image (...)")] for the others

:func:`load_one` is the same for a single source (a ``Dataset`` item that carries its error).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: what a bad sample raises (DataError is a ValueError); anything else is a bug and propagates
BAD_SAMPLE = (OSError, ValueError)


@dataclass
class Loaded:
    """The outcome of :func:`load_each`."""

    kept: list[int] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)


def load_one(source: Any, loader: Callable[[Any], Any]) -> tuple[Any, str | None]:
    """``(loader(source), None)``, or ``(None, one-line reason)`` when the source is a bad sample."""
    try:
        return loader(source), None
    except BAD_SAMPLE as exc:
        return None, str(exc)


def load_each(sources: Sequence[Any], loader: Callable[[Any], Any]) -> Loaded:
    """``loader(source)`` for every source; a source whose loader raises a bad-sample error is reported."""
    out = Loaded()
    for i, source in enumerate(sources):
        item, error = load_one(source, loader)
        if error is not None:
            out.errors.append((i, error))
        else:
            out.kept.append(i)
            out.items.append(item)
    return out
