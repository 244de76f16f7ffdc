"""Assert a refusal by its code (the message is the reader's language, not a contract)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from coffre.refusals import Refusal


@contextmanager
def refused(kind: type[Refusal], code: str) -> Iterator[pytest.ExceptionInfo]:
    with pytest.raises(kind) as caught:
        yield caught
    assert caught.value.code == code, f"refused with {caught.value.code}, not {code}"


def row_codes(error: Refusal) -> set[str]:
    """The codes of a batch refusal's rows (coffre.labwork.workflow.WorkflowError)."""
    return {why.code for _row, why in getattr(error, "problems", [])}
