"""User-facing exception types of mmadapt.

Every error a user can fix (a bad recipe, a bad data file) is raised as one of these, with a message that
names *what* is wrong and *where* (file, key or field, expected vs got). Both are also ``ValueError``\\ s,
so callers that only know the standard library can still catch them.
"""

from __future__ import annotations


class MMAdaptError(Exception):
    """Base class of all mmadapt errors."""


class ConfigError(MMAdaptError, ValueError):
    """An invalid configuration or argument, e.g. ``adapter.rank: expected int > 0, got -1``."""


class DataError(MMAdaptError, ValueError):
    """A bad data file, field or sample, e.g. ``val_questions.json: questions[12].question_id missing``."""


class TrainingError(MMAdaptError, RuntimeError):
    """Training cannot go on, e.g. ``train: 3 steps in a row (41–43) had a non-finite loss``."""
