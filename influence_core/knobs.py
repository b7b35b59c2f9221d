"""A method's or curvature's settings (its knobs), typed: what each sets, its type, its default and its range. The
registries declare them on each backend (``knobs = {"rank": Knob(...)}``); the config's validation parses and checks
the values a run is given, the CLI's help lists them, and one widget shows them in every view with a picker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from influence_core.errors import InputError

Number = Union[int, float]


@dataclass(frozen=True)
class Knob:
    description: str  # what it sets, in words ("the projected dimension k")
    default: Optional[Number]  # None: chosen at run time (the text says how)
    kind: type = float  # int, float, or bool (0 / 1)
    low: Optional[Number] = None
    high: Optional[Number] = None

    def __str__(self) -> str:  # how a message lists it: "rank (eigenpairs kept, default 20)"
        shown = "chosen at run time" if self.default is None else f"default {self.default:g}"
        return f"{self.description}, {shown}"

    def parse(self, name: str, value: Any) -> Number:
        """``value`` as this knob's type, refused with what to give when it is not one or is out of range."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"option {name} takes a number, got {value!r}") from None
        if self.kind in (int, bool) and number != int(number):
            raise InputError(f"option {name} takes a whole number, got {value!r}")
        if self.kind is bool and number not in (0, 1):
            raise InputError(f"option {name} is 0 or 1, got {value!r}")
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            bounds = f"from {self.low:g}" if self.low is not None else ""
            bounds += (" " if bounds else "") + (f"to {self.high:g}" if self.high is not None else "")
            raise InputError(f"option {name} must be {bounds}, got {value!r}")
        return int(number) if self.kind in (int, bool) else number


def check_knobs(owner: str, known: dict[str, Knob], options: dict) -> dict[str, Number]:
    """The options parsed against ``known`` (the backend's knobs), refusing an unknown name with the ones it has."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        offer = "; ".join(f"{k} ({v})" for k, v in known.items()) or "none"
        raise InputError(f"the {owner} has no option {', '.join(unknown)}; its options: {offer}")
    return {name: known[name].parse(name, value) for name, value in options.items()}
