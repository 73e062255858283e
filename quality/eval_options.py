"""``pansharp evaluate``'s options, refused before any file is read or any method runs.

An evaluation of several methods on a large scene runs for minutes; an option no run
can use (an unknown protocol, no method, a tile smaller than one index block, a ratio
the 23-tap interpolator does not exist for) must fail at once, with the one-line message
that names the flag, not after the first method has been fused.
"""

from __future__ import annotations

from collections.abc import Sequence

from errors import OptionError, QualityError
from quality.checks import BLOCK

PROTOCOLS = ("both", "reduced", "full")
#: Methods whose own arithmetic re-interpolates with the 23-tap filter (besides the EXP
#: every method receives): EXP itself and the MTF-GLP family (quality.md, method notes).
TAP23_METHODS = ("exp", "mtf-glp", "mtf-glp-hpm", "mtf-glp-fs")


def scales_of(protocol: str) -> tuple[str, ...]:
    """``both`` -> (reduced, full); ``reduced``/``full`` -> that one."""
    p = str(protocol).strip().lower()
    if p not in PROTOCOLS:
        raise OptionError(
            f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}; "
            "use reduced (Wald's protocol), full (no reference) or both"
        )
    return ("reduced", "full") if p == "both" else (p,)


def check_interpolator(ratio: int, methods: Sequence[str], scales: Sequence[str]) -> None:
    """Refuse a ratio the 23-tap interpolator does not exist for, saying who needs it.

    quality.md: EXP is defined for power-of-two ratios only. Reduced resolution feeds
    every method EXP(MS_LR) (A.4); full resolution uses EXP(MS) in D_lambda and
    D_lambda_K and PAN_lp = EXP(imresize(PAN)) in D_S, QNR and HQNR (B).
    """
    if ratio >= 2 and not ratio & (ratio - 1):
        return
    needs = []
    if "reduced" in scales:
        own = [m for m in methods if m in TAP23_METHODS]
        extra = f"; {', '.join(own)} also re-interpolate with it" if own else ""
        needs.append(
            "the reduced-resolution protocol, which gives every method EXP(MS_LR) "
            f"(quality.md A.4){extra}"
        )
    if "full" in scales:
        needs.append(
            "the full-resolution indexes: EXP(MS) in D_lambda and D_lambda_K, and PAN_lp in "
            "D_S, QNR and HQNR"
        )
    raise QualityError(
        f"ratio {ratio} is not a power of two, and the 23-tap interpolator exists only for "
        f"ratios 2, 4, 8, ...; it is needed by {' and by '.join(needs)}. Score a result made "
        f"elsewhere with --reference GT.tif FUSED.tif --ratio {ratio} (the reduced-resolution "
        "indexes themselves need no interpolator)"
    )


def method_names(methods: Sequence[str] | str) -> list[str]:
    """The ``-m`` names, lower case, each once, in the order given."""
    names = [methods] if isinstance(methods, str) else list(methods)
    out: list[str] = []
    for n in names:
        key = str(n).strip().lower()
        if key and key not in out:
            out.append(key)
    if not out:
        raise OptionError(
            "name the methods to evaluate with -m, e.g. -m exp -m gsa -m mtf-glp "
            "(see pansharp models)"
        )
    return out


def check_tile(tile: int) -> int:
    """``--tile``: an integer of at least one index block (32 pixels)."""
    if isinstance(tile, bool) or int(tile) != tile or tile < BLOCK:
        raise OptionError(f"--tile {tile} must be an integer of at least {BLOCK} pixels")
    return int(tile)
