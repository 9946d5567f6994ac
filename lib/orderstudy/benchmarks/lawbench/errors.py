"""The one error the scorers raise for input they cannot score."""

from __future__ import annotations


class LawBenchInputError(ValueError):
    """An answer, prediction or prompt that cannot be scored, with what was expected.

    Scorers of a single item raise it with the problem only; ``score_task`` adds the item's index
    and the command-line tool adds the file, so the message a person reads names all three.
    """
