"""Refusals: a service says no with a stable code; the edge says it in the reader's language.

A service declares each reason it may refuse once, as a ``Reason`` (a code such as
``export.second_person`` and a French message marked for translation, as every UI string
is), and raises ``Refusal(reason, **params)`` or a subclass. ``str(refusal)`` is the message
in the active language (French by default, English for a page asked in English);
``refusal.render("en")`` names the language (the CLI, FHIR and HL7 answers are English).
Callers decide on ``refusal.code`` or the exception class, never on the message's text.

Parameters are operational values only (a state, a count, an export number, a test
code): never a patient value, since a refusal may reach a log or an audit line.

This module imports nothing of Coffre, so any app may raise a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import override

REASONS: dict[str, Reason] = {}


@dataclass(frozen=True)
class Reason:
    """Why a service refuses: a stable code and a translatable message template
    (``%(name)s`` parameters)."""

    code: str
    message: Promise | str


def reason(code: str, message: Promise | str) -> Reason:
    """Declare a reason once (module level); its code must be new."""
    if code in REASONS:
        raise ValueError(f"refusal code {code!r} is declared twice")
    REASONS[code] = found = Reason(code, message)
    return found


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, Promise | Refusal) else value


class Refusal(Exception):
    """A refused operation: ``code``, ``reason`` and ``params``; ``str()`` renders it."""

    def __init__(self, why: Reason, /, **params: Any) -> None:
        super().__init__(why.code)
        self.reason = why
        self.params = params

    @property
    def code(self) -> str:
        return self.reason.code

    def render(self, language: str | None = None) -> str:
        """The message in ``language``, or in the active language."""
        if language is not None:
            with override(language):
                return self.render()
        text = str(self.reason.message)
        if not self.params:
            return text
        return text % {name: _text(value) for name, value in self.params.items()}

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r})"


def english(error: BaseException) -> str:
    """What the English-speaking channels (CLI, FHIR, HL7) print of an error."""
    return error.render("en") if isinstance(error, Refusal) else str(error)
