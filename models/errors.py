"""The one error type every tool in this repository reports as a single line.

`ToolkitError` means "the user asked for something that cannot be done" (unknown model, bad resolution, corrupt
checkpoint or artifact, missing toolchain, ...). Command-line entry points run through `cli_main`, which prints
such an error as one line on stderr and exits with status 2, so no traceback reaches the user. Any other exception
is a bug in the toolkit and keeps its traceback.

models/ sits at the top of the data flow (models -> export -> devices -> bench), so the downstream packages import
this module rather than define their own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable


class ToolkitError(Exception):
    """A user-facing error: printed as one line, never as a traceback."""


def unknown(kind: str, name: str, valid: Iterable[str]) -> ToolkitError:
    """The error for an unknown name, listing the valid ones (never auto-corrected)."""
    return ToolkitError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")


def cli_main(main: Callable[[list[str] | None], int | None], prog: str, argv: list[str] | None = None) -> int:
    """Run a CLI `main`, turning ToolkitError and Ctrl-C into one line and an exit status."""
    try:
        return int(main(argv) or 0)
    except ToolkitError as exc:
        from models.escape import escape  # the message may quote a file name or a device's output: one line

        print(f"{prog}: error: {escape(str(exc), 'terminal')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more (and no traceback at exit)
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
