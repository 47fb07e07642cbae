"""argparse types for the command line: numbers in range, with one-line errors."""

from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["number", "positive_float", "positive_int", "non_negative_float", "probability"]


def number(kind: type = float, *, above: float | None = None, at_least: float | None = None,
           below: float | None = None, what: str = "a number") -> Callable[[str], float]:
    """A parser for ``kind`` values with optional bounds; errors say what was expected."""
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
        if above is not None and not v > above:
            raise argparse.ArgumentTypeError(f"expected a number > {above:g}, got {v}")
        if at_least is not None and not v >= at_least:
            raise argparse.ArgumentTypeError(f"expected a number >= {at_least:g}, got {v}")
        if below is not None and not v < below:
            raise argparse.ArgumentTypeError(f"expected a number < {below:g}, got {v}")
        return v
    return parse


positive_int = number(int, at_least=1, what="a whole number")
positive_float = number(above=0, what="a number of seconds")
non_negative_float = number(at_least=0, what="a number of seconds")
probability = number(at_least=0, below=1, what="a probability in [0, 1)")
