"""Kubernetes resource quantities ("150m", "1", "256Mi", "1Gi") as the API server reads and writes them
(k8s.io/apimachinery resource.Quantity), for the tests that add up what the manifests request and the one that
holds every quantity to the form the server stores."""

from __future__ import annotations

import re
from fractions import Fraction

DECIMAL = {"n": -3, "u": -2, "m": -1, "": 0, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_QUANTITY = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))([a-zA-Z]*)")


def _split(text: str | int) -> tuple[Fraction, str]:
    match = _QUANTITY.fullmatch(str(text).strip())
    if not match or match.group(2) not in DECIMAL | BINARY:
        raise ValueError(f"not a quantity this test reads (number plus SI or binary suffix): {text!r}")
    return Fraction(match.group(1)), match.group(2)


def quantity(text: str | int) -> Fraction:
    """The value in base units: cores for CPU, bytes for memory."""
    number, suffix = _split(text)
    if suffix in BINARY:
        return number * 1024 ** BINARY[suffix]
    return number * Fraction(1000) ** DECIMAL[suffix]


def canonical(text: str | int) -> str:
    """What the API server gives back for `text` (resource.Quantity's canonical form): binary-suffixed values in
    the largest binary unit that keeps them whole (1024Mi -> 1Gi), unless below 1024 or fractional; the others in
    the largest SI unit that keeps them whole (1000m -> 1, 0.5 -> 500m)."""
    _number, suffix = _split(text)
    value = quantity(text)
    if suffix in BINARY and abs(value) >= 1024 and value.denominator == 1:
        whole, power = int(value), 0
        while whole % 1024 == 0 and power < max(BINARY.values()):
            whole, power = whole // 1024, power + 1
        unit = {v: k for k, v in BINARY.items()}.get(power, "")
        return f"{whole}{unit}"
    for power in sorted(DECIMAL.values(), reverse=True):
        scaled = value / Fraction(1000) ** power
        if scaled.denominator == 1:
            unit = {v: k for k, v in DECIMAL.items()}[power]
            return f"{int(scaled)}{unit}" if scaled else "0"
    raise ValueError(f"{text!r} is finer than a nano unit: the server rounds it up")
