"""Every error pansharp raises on purpose.

One root, :class:`PansharpError`, so the CLI can turn any of them into one line on
stderr and a non-zero exit. Each subclass also inherits the builtin a Python caller
would expect (``ValueError``, ``FileNotFoundError`` ...), the way rasterio's
``errors.py`` does, so library users can catch either. Messages name the file or the
flag that fixes the problem.
"""

from __future__ import annotations


class PansharpError(Exception):
    """Root of every error pansharp raises deliberately."""

    exit_code: int = 2


class InputFileError(PansharpError, FileNotFoundError):
    """An input path is missing, unreadable or not a raster."""

    exit_code = 3


class RasterFormatError(PansharpError, ValueError):
    """A raster opens but cannot be used as given (band count, dtype, truncation)."""

    exit_code = 3


class GeometryError(PansharpError, ValueError):
    """PAN and MS grids do not fit together (no overlap, non-integer ratio, no georeference)."""

    exit_code = 4


class OptionError(PansharpError, ValueError):
    """A command-line option or library argument has an invalid value."""

    exit_code = 2


class UnknownNameError(OptionError, KeyError):
    """A name (method, sensor, profile) is not in its table; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputError(PansharpError, OSError):
    """The destination cannot be written (exists, folder missing, not writable)."""

    exit_code = 5


class WeightsError(PansharpError, ValueError):
    """Model weights are missing, unsafe (pickle) or do not match the scene."""

    exit_code = 6


class QualityError(PansharpError, ValueError):
    """A quality index cannot be computed on the given arrays."""

    exit_code = 7


class Interrupted(PansharpError, KeyboardInterrupt):
    """The run was interrupted (SIGINT); partial output was removed."""

    exit_code = 130


def unknown_name(kind: str, name: str, valid: list[str], flag: str) -> UnknownNameError:
    """Build the error for a name missing from a table, listing every valid name."""
    return UnknownNameError(f"unknown {kind} {name!r} for {flag}; valid names: {', '.join(valid)}")
