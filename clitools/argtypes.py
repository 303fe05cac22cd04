"""argparse `type=` converters for the bounds the CLIs take: counts, sizes, rates and seconds."""

import argparse


def non_negative_int(text: str) -> int:
    """The integer in `text`; below 0 is refused."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """The integer in `text`; below 1 is refused."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    """The number in `text`; below 0 is refused, and so is NaN (infinity is accepted)."""
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value
