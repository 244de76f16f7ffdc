"""``coffre leakcheck``: search every file under COFFRE_HOME for patient values."""

from __future__ import annotations

import argparse
import logging

from coffre import config
from coffre.cmdkit import BadInput, command
from coffre.progress import bars

logger = logging.getLogger("coffre.cli")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leakcheck", help="search every file under COFFRE_HOME for patient values")
    p.add_argument("--max-unsearched", type=int, metavar="PERCENT",
                   help="fail as inconclusive when more of the values are too short to "
                        "search (default 40, or COFFRE_LEAKCHECK_MAX_UNSEARCHED)")


@command("leakcheck")
def leakcheck(args: argparse.Namespace) -> int:
    from coffre.leakcheck.run import run_leakcheck

    bound = None
    if args.max_unsearched is not None:
        if not 0 <= args.max_unsearched <= 100:
            raise BadInput("--max-unsearched is a percentage, 0 to 100")
        bound = args.max_unsearched / 100
    with bars() as add:
        lines, passed = run_leakcheck(config.home(), add, bound)
    for line in lines:
        print(line)
    logger.info("leakcheck: %s", "passed" if passed else "FAILED")
    return 0 if passed else 1

