"""Stopping when told: SIGTERM (a scheduler's pre-emption, ``timeout``, ``kill``) and SIGINT (Ctrl-C).

Every file facegen writes is atomic (:mod:`facegen.atomic`), so a job may stop between any two instructions:
what it wrote is complete and a rerun of the same command goes on from there. :func:`stopping_on_signals`
turns the first signal into :class:`Stopped`, raised in the main thread at once; whoever knows what was done
(e.g. the prediction writer) puts a one-line account into :attr:`Stopped.done`, and the ``facegen`` command
prints it and exits with ``128 + signal``. A second signal ends the process at once.

``fit`` is stopped by Lightning instead (``mode="fit"``): Lightning notes SIGTERM and stops at the end of the
training step, and Ctrl-C raises ``KeyboardInterrupt``; a callback then saves a resumable checkpoint
(:class:`facegen.callbacks.checkpoint.CheckpointOnStop`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

#: The signals that stop a job.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """A stop signal arrived (a ``BaseException``, like ``KeyboardInterrupt``: ``except Exception`` lets it by)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        #: What the job finished before it stopped (one line).
        self.done = "everything written before it is complete; the same command goes on from there"

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextmanager
def stopping_on_signals(mode: Literal["raise", "fit"] = "raise") -> Iterator[None]:
    """Within the block, the first SIGTERM or SIGINT raises :class:`Stopped` in the main thread (``mode="raise"``)
    or, while Lightning trains (``mode="fit"``), is left to it: SIGTERM is noted by Lightning's own handler,
    which calls this one after it, and SIGINT is raised as ``KeyboardInterrupt``; a second one exits the process at once with ``128 + signal``. Child processes that
    inherited the handlers (forked data-loader workers) keep the default behaviour. The previous handlers are
    restored at the end. Outside the main thread (signals cannot be handled there) it does nothing."""
    owner = os.getpid()
    received: list[int] = []

    def handle(signum: int, frame) -> None:
        if os.getpid() != owner:  # a forked child: die as it would have without facegen's handler
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        received.append(signum)
        if len(received) > 1:
            os._exit(128 + signum)
        if mode == "raise" or signal.getsignal(signum) is handle:  # Lightning is not training (yet)
            raise Stopped(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt

    try:
        previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
