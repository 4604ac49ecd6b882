"""The typer app and what every command shares: user-error handling, tables and ``--json`` output.

Commands live beside this file, one module per part of the product (``core``, ``zoo``, ``search``,
``export``); each is thin: it parses options, calls the library, and prints.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from menas_zoo.errors import EXIT_INTERRUPTED, MenasError

app = typer.Typer(
    name="menas-zoo",
    help="Search, get and ship small, fast image classifiers found by MENAS (multi-trial NAS with lottery tickets).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from menas_zoo import __version__

        typer.echo(f"menas-zoo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Search, get and ship small, fast image classifiers found by MENAS (multi-trial NAS with lottery tickets)."""


space_app = typer.Typer(help="The MobileNet3-MT search space.", no_args_is_help=True)
app.add_typer(space_app, name="space")

# Piped output gets a wide console so tables are not cropped at 80 columns.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn a MenasError into one line on stderr and its exit code (see :mod:`menas_zoo.errors`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MenasError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


#: the metavar of an option whose own says nothing more specific, by type: one style in every usage line
_METAVARS = {int: "N", float: "NUMBER", str: "TEXT", Path: "PATH"}


def _default_metavars(fn: Callable[..., Any]) -> None:
    """Give every option and argument without a metavar the one of its type (typer's own vary by range)."""
    hints = typing.get_type_hints(fn)
    for name, parameter in inspect.signature(fn).parameters.items():
        info = parameter.default
        if not isinstance(info, typer.models.ParameterInfo) or info.metavar is not None:
            continue
        hint = hints.get(name)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint
        if base in _METAVARS:
            info.metavar = _METAVARS[base]


def command(target: typer.Typer = app, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """``@command()`` registers a CLI command whose user errors end in one clean line."""

    def decorate(fn: F) -> F:
        _default_metavars(fn)
        target.command(name, **kwargs)(user_errors(fn))
        return fn

    return decorate


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


#: A cell that is one number, with at most a unit: 97,714 / 5.85M / 0.9330 / 12% / 1.7x / 0.224 ms / -
NUMBER = re.compile(r"[-+]?(\d[\d,]*(\.\d+)?(e[-+]?\d+)?|\.\d+)\s?([%KMGx]|ms|s|MB|MiB|img/s)?|-")


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Numbers right-aligned, so their digits line up; a column of words or of mixed values (a key/value
    table's) left-aligned, as is the first."""
    cells = [[str(v) for v in row] for row in rows]
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        numeric = i > 0 and all(NUMBER.fullmatch(row[i]) for row in cells if i < len(row))
        table.add_column(col, justify="right" if numeric else "left")
    for row in cells:
        table.add_row(*row)
    console.print(table)


def main() -> None:
    app()
