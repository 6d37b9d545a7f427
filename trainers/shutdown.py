"""SIGTERM/SIGINT for ``rl-mask train``: stop cleanly, so no Ray process outlives the run.

``timeout``, Kubernetes and batch schedulers stop a job with SIGTERM. Without a handler the
driver dies on the spot (Ray's own handler exits from wherever the main thread is), and
actors and idle workers of a Ray it started can stay alive. Here the first signal that
arrives while a PPO iteration runs lets that iteration finish and a checkpoint be written;
a signal at any other time, or a second one, stops at once. Either way ``Interrupted``
unwinds the training code, whose ``finally`` stops the algorithm, the FR actor and Ray, and
the command exits with ``128 + signal number``.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGINT in the main thread. A ``KeyboardInterrupt`` because that is the one
    exception Ray's blocking ``ray.get`` passes on from a signal handler (as a plain
    ``KeyboardInterrupt``: ``GracefulStop.interrupted`` restores the signal)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class GracefulStop:
    """Installs the handlers while active; ``deferred()`` marks where a first signal may wait."""

    def __init__(self):
        self.requested: int | None = None
        self.signum: int | None = None  # the signal that stopped the run
        self._deferring = False
        self._raised = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self._raised:  # already unwinding: let the cleanup finish
            print(f"rl-mask: {name} again, still shutting Ray down", file=sys.stderr, flush=True)
            return
        if self._deferring and self.requested is None:
            self.requested = signum
            print(f"rl-mask: {name}: finishing this iteration and writing a checkpoint, then stopping (send it again to stop now)", file=sys.stderr, flush=True)
            return
        self._raised = True
        self.signum = signum
        raise Interrupted(signum)

    @contextmanager
    def deferred(self):
        """Inside: a first signal only sets ``requested``; the caller checks it afterwards."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def stop_if_requested(self) -> None:
        if self.requested is not None and not self._raised:
            self._raised = True
            self.signum = self.requested
            raise Interrupted(self.requested)

    def interrupted(self, exc: KeyboardInterrupt) -> KeyboardInterrupt:
        """``exc`` as ``Interrupted`` with its signal (Ray turns ours into a plain KeyboardInterrupt)."""
        if isinstance(exc, Interrupted) or self.signum is None:
            return exc
        return Interrupted(self.signum)
