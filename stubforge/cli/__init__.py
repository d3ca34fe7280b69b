"""Command line: parse options, call the library (`stubforge.api` and the sides), render text or JSON.

One module per side registers its commands on the `cli` group: build.py (pythons, sources, build, stubs),
envs.py (pack-env, param), server.py (install, list, check, verify, push, clean), runner.py (run), targets.py
(sysroot). A module is imported when one of its commands runs (or help lists them all): each pulls in its side
of the library, and a command should not pay for the others' imports at every start. No decision is made here
that a program calling the library would not get too.
"""

from __future__ import annotations

import functools
import importlib
import json
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from stubforge import __version__
from stubforge.core.releases import DEFAULT_TRITON
from stubforge.errors import StubforgeError
from stubforge.progress import Progress, reporter

F = TypeVar("F", bound=Callable[..., Any])


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


# What an interrupted command leaves, per command: each writes its outputs atomically or cleans up.
_INTERRUPTED = {
    "build": "nothing was cached",
    "sources": "nothing was cached",
    "stubs": "nothing was cached",
    "pack-env": "no output was written",
    "param": "config.pbtxt was left as it was",
    "install": "nothing was installed",
    "run": "the model's stubs were stopped",
    "verify": "the server was stopped",
    "push": "the files uploaded so far stay; push again to send the rest",
    "sysroot": "no sysroot was written",
}


def handle_errors(func: F) -> F:
    """Expected failures print `error:` and `hint:` and exit non-zero; -v adds the traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        verbose = bool(ctx.find_root().params.get("verbose"))
        as_json = bool(ctx.params.get("as_json"))
        try:
            return func(*args, **kwargs)
        except StubforgeError as exc:
            if as_json:
                emit_json(exc.to_dict())
            else:
                click.echo(f"error: {exc.message}", err=True)
                if exc.details:
                    click.echo(exc.details, err=True)
                if exc.hint:
                    click.echo(f"hint: {exc.hint}", err=True)
            if verbose:
                traceback.print_exc()
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            command = ctx.command_path.split()[1] if len(ctx.command_path.split()) > 1 else ""
            left = _INTERRUPTED.get(command)
            click.echo(f"error: interrupted{'; ' + left if left else ''}", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Show no progress lines.")


def triton_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    """--triton, defaulting to the one default release unless the command needs it given."""
    if required:
        return click.option("--triton", required=True, help=help)
    return click.option("--triton", default=DEFAULT_TRITON, show_default=True, help=help)


def progress_for(quiet: bool, as_json: bool, label: str = "") -> Progress:
    """Progress lines on stderr, unless --quiet or --json (whose stdout a script parses) asks for none."""
    return reporter(quiet=quiet or as_json, label=label)


def warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


# Command name -> the module of stubforge.cli that registers it.
_COMMAND_MODULES = {
    "pythons": "build",
    "sources": "build",
    "build": "build",
    "stubs": "build",
    "param": "envs",
    "pack-env": "envs",
    "run": "runner",
    "install": "server",
    "list": "server",
    "check": "server",
    "verify": "server",
    "push": "server",
    "clean": "server",
    "sysroot": "targets",
}


class _LazyGroup(click.Group):
    """Imports the module of a command when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in sorted(set(_COMMAND_MODULES.values())):
            importlib.import_module(f"stubforge.cli.{module}")
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMAND_MODULES.get(cmd_name)
        if module is not None and cmd_name not in self.commands:
            importlib.import_module(f"stubforge.cli.{module}")
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and commands run.")
@click.version_option(__version__, prog_name="stubforge")
def cli(verbose: bool) -> None:
    """Build, install and test Triton python_backend stubs for any CPython."""


__all__ = ["cli", "main"]


def _terminated(_signum: int, _frame: object) -> None:
    # SIGTERM (docker stop, kill) unwinds like Ctrl-C, so build trees and staging dirs are removed.
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    cli(prog_name="stubforge")


if __name__ == "__main__":
    main()
