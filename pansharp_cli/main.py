"""The ``pansharp`` command: a Typer app whose commands live one per module.

:func:`main` is the console-script entry point. It turns every deliberate error
(:class:`errors.PansharpError`), every usage error and an interruption into one line
on stderr and a non-zero exit code, so shell loops over hundreds of scenes can rely
on ``$?`` and read a single line when something is wrong. It also owns the process:
it applies pansharp's process-wide settings (:func:`tiling.process.apply_process_settings`:
huge pages for torch's CPU tensors) and its signal handlers before any command runs, so
before anything imports torch; importing this module changes neither.
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import click
import typer

try:  # typer >= 0.24 vendors its own copy of click; catch both
    from typer._click import exceptions as _tx

    _USAGE = (click.UsageError, _tx.UsageError)
    _CLICK = (click.ClickException, _tx.ClickException)
    _NOARGS: tuple[type, ...] = (_tx.NoArgsIsHelpError,)
except ImportError:  # pragma: no cover - older typer
    _USAGE = (click.UsageError,)
    _CLICK = (click.ClickException,)
    _NOARGS = ()

from errors import Interrupted, PansharpError
from tiling.process import apply_process_settings

app = typer.Typer(
    name="pansharp",
    help="Pansharpen GeoTIFF scenes of any size with classical and deep models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    """``--version``: print ``pansharp X.Y.Z`` (the installed package's metadata) and stop."""
    if value:
        from models.deep.card import pansharp_version  # importlib.metadata; torch-free

        typer.echo(f"pansharp {pansharp_version()}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Options before the command (``pansharp --version``)."""


def _register() -> None:
    from pansharp_cli import batch, fuse, listing, train

    fuse.register(app)
    batch.register(app)
    listing.register(app)
    __import__("pansharp_cli.evaluate", fromlist=["register"]).register(app)
    train.register(app)


_register()


def _sigterm(signum: int, frame: object) -> None:
    raise Interrupted("terminated")


def fail(message: str, code: int) -> None:
    """Print one line on stderr and exit."""
    line = " ".join(str(message).split())
    sys.stderr.write(f"pansharp: error: {line}\n")
    raise SystemExit(code)


#: ``--adapt`` alone means ``--adapt tailor`` (click options cannot take an optional value)
ADAPT_MODES = ("tailor", "swift", "full")


def optional_values(argv: list[str]) -> list[str]:
    """``--adapt`` not followed by a mode gets the default mode, ``tailor``."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--adapt" and (nxt is None or nxt.strip().lower() not in ADAPT_MODES):
            out.append("tailor")
    return out


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point with one-line errors."""
    argv = optional_values(list(sys.argv[1:] if argv is None else argv))
    apply_process_settings()  # before any command can import torch; an exported value wins
    signal.signal(signal.SIGTERM, _sigterm)
    # Even when started with SIGINT ignored (a background job of a non-interactive
    # shell), Ctrl-C / kill -INT must stop the run and clean the partial output.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rv = app(args=argv, standalone_mode=False)
        # typer turns KeyboardInterrupt into an exit code of 130 and returns it here
        if rv == 130:
            fail("interrupted; no output was written", 130)
        if isinstance(rv, int) and rv != 0:
            raise SystemExit(rv)
    except Interrupted:
        fail("interrupted; no output was written", 130)
    except KeyboardInterrupt:
        fail("interrupted; no output was written", 130)
    except PansharpError as exc:
        fail(str(exc), exc.exit_code)
    except (click.exceptions.Exit, typer.Exit) as exc:
        raise SystemExit(getattr(exc, "exit_code", 0)) from None
    except (click.exceptions.Abort, typer.Abort):
        fail("aborted", 130)
    except _NOARGS as exc:
        sys.stdout.write(exc.ctx.get_help() + "\n")  # type: ignore[attr-defined]
        raise SystemExit(2) from None
    except _USAGE as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx else ""
        fail(f"{exc.format_message()}{hint}", 2)
    except _CLICK as exc:
        fail(exc.format_message(), exc.exit_code)


if __name__ == "__main__":
    main()
