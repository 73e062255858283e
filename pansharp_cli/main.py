"""The ``pansharp`` command: a Typer app whose commands live one per module.

:func:`main` is the console-script entry point. It turns every deliberate error
(:class:`errors.PansharpError`), every usage error and an interruption into one line
on stderr and a non-zero exit code, so shell loops over hundreds of scenes can rely
on ``$?`` and read a single line when something is wrong.
"""

from __future__ import annotations

import signal
import sys

import click
import typer

from errors import Interrupted, PansharpError

app = typer.Typer(
    name="pansharp",
    help="Pansharpen GeoTIFF scenes of any size with classical and deep models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register() -> None:
    from pansharp_cli import fuse, listing

    fuse.register(app)
    listing.register(app)


_register()


def _sigterm(signum: int, frame: object) -> None:
    raise Interrupted("terminated")


def fail(message: str, code: int) -> None:
    """Print one line on stderr and exit."""
    line = " ".join(str(message).split())
    sys.stderr.write(f"pansharp: error: {line}\n")
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point with one-line errors."""
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        app(args=argv, standalone_mode=False)
    except Interrupted:
        fail("interrupted; no output was written", 130)
    except KeyboardInterrupt:
        fail("interrupted; no output was written", 130)
    except PansharpError as exc:
        fail(str(exc), exc.exit_code)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)


if __name__ == "__main__":
    main()
