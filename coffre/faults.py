"""Kill points for the kill -9 tests (tests/test_faults.py).

``COFFRE_TEST_KILL_AT=NAME`` (or ``NAME:N``, the N-th time) makes the process send
itself SIGKILL when it reaches ``point(NAME)``: a real kill -9 at the one moment a test
wants to prove safe, which a timer could only hit by luck. Unset (always, outside the
tests), a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "COFFRE_TEST_KILL_AT"
_reached: dict[str, int] = {}


def point(name: str) -> None:
    wanted = os.environ.get(ENV_VAR)
    if not wanted:
        return
    target, _, times = wanted.partition(":")
    if target != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(times or 1):
        os.kill(os.getpid(), signal.SIGKILL)
