"""``coffre apiclients ...`` (filled in by its capability)."""

import argparse


def add_arguments(sub: argparse._SubParsersAction) -> None:
    """No sub-command yet."""
