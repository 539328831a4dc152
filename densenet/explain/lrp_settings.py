"""LRP's rule names and default, as data: the method records and the propagation both read them."""

from __future__ import annotations

#: The composites offered: ε + z⁺ + flat (the default), plain ε, and α1β0.
RULES: tuple[str, ...] = ("epsilon-plus-flat", "epsilon", "alpha1-beta0")
DEFAULT_RULE = RULES[0]
