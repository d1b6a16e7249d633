"""Every console script ends quietly when its reader goes away: ``lepton-agent --validate-config | head -3``.

Python ignores SIGPIPE, so a write to a pipe whose reader has exited raises ``BrokenPipeError``;
and output small enough to sit in stdout's buffer fails only when the interpreter flushes it at
exit, which prints "Exception ignored ... BrokenPipeError" and exits 120. Whether the one or the
other happens depends on when ``head`` exits, so it came and went from run to run.

``ends_quietly_on_closed_pipe`` wraps a ``main(argv) -> int``: it flushes stdout while it still
can catch the error, and on a closed pipe points stdout at /dev/null (what Python flushes at exit
goes nowhere) and exits with ``EXIT_CLOSED_PIPE``, 0: the reader chose to stop reading, which is
not the program's failure, so a ``set -o pipefail`` script does not fail on ``| head`` (as
``lepton monitor --raw`` already behaved). Restoring SIGPIPE's default (death by signal, status
141) is not an option for services: a write to a TCP socket the broker reset would kill them too.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

EXIT_CLOSED_PIPE = 0


def silence_stdout() -> None:
    """Point stdout's file descriptor at /dev/null, so nothing written or flushed later raises."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no stdout, or not a real file (tests)
        pass


def ends_quietly_on_closed_pipe(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            try:
                return main(argv)
            finally:  # also after SystemExit (--help): the exit-time flush would be past any handler
                if sys.stdout is not None:
                    sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
            return EXIT_CLOSED_PIPE

    return wrapped
