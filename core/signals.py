"""The command line's Ctrl-C: one line and status 130, from the first moment.

Installed by ``core/__init__`` when the process is ``python -m core`` (before
JAX is imported, the first seconds), and again by ``core.__main__``.  Python's
default raised KeyboardInterrupt wherever the main thread was: a traceback
(inside an import), a segfault when it landed inside a JAX call, or nothing
at all when it landed in a garbage-collection callback (a sweep then ran to
its end).  Imports nothing heavy.
"""
from __future__ import annotations

import os
import signal
import sys

MESSAGE = b"error: interrupted: stopped at once (a run in training is not saved).\n"


def quit_on_signals() -> None:
    """SIGINT / SIGTERM end the process at once with :data:`MESSAGE` on
    stderr and status 130 (a sweep replaces this with its graceful stop)."""
    def handler(signum, frame):
        os.write(2, MESSAGE)
        os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def running_the_cli() -> bool:
    """True in ``python [options] -m core ...`` (the package is imported
    first, while ``sys.argv[0]`` is still ``-m``), not for ``-m core.allocator``."""
    argv = getattr(sys, "orig_argv", [])
    return "-m" in argv and argv[argv.index("-m") + 1:][:1] == ["core"]
