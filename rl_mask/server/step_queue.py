"""Aggregated FR steps: protected batches from many callers, trained in GPU-sized steps.

An FR step on one 64-row message leaves a GPU mostly idle (issue 19: 6k images/s at 64 rows,
87k at 4,096 on an H200). The FR server therefore queues the messages that arrive while it is
busy, as learners of IMPALA-style systems queue their actors' rollouts, and trains one step on
the union of the queued messages (``protocol.concat_protected``: messages of smaller k are
padded with columns of weight 0 and label -1, which add no loss and no gradient), up to
``fr.rows_per_step`` rows, in arrival order. A message is never split.

A step starts once the queued rows reach ``rows_per_step``, or once the oldest queued message
has waited ``wait_s`` (so a caller is never stranded when fewer rows are in flight). Each
caller gets its own message's answer: the mean loss of *its own rows* in that step
(``FRService.train_messages``), so every env step keeps its own reward.

Thread-safe: many threads (a Ray actor's concurrent calls) call ``train`` at once. The lock
is the service's, so nothing else touches the network during a step. With ``own_thread`` (the
Ray FR actor) every step runs on one thread of the queue's own (the *stepper*), not on
whichever caller found it ready: torch's CPU kernels run in an OpenMP team per calling thread,
and steps that hopped between a Ray actor's pool threads ran about 4% slower on 2 cores than
steps on one thread (``benchmarks/step_thread.py``). The stepper starts with the first message
and ends after ``IDLE_EXIT_S`` without one (so a service that is dropped does not keep a thread,
and its network, alive). Without it (one caller in-process: debug mode, ``train-fr``) the
caller runs its own step, and the process keeps one OpenMP team.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from rl_mask.protocol import ProtectedBatch

#: Seconds without a queued message after which the stepper thread ends (the next message starts it again).
IDLE_EXIT_S = 10.0


@dataclass
class _Queued:
    batch: ProtectedBatch
    arrived: float
    result: dict | None = None
    error: BaseException | None = None


class StepQueue:
    def __init__(self, train_messages: Callable[[list[ProtectedBatch]], list[dict]], rows_per_step: int, wait_s: float = 0.0, lock: threading.RLock | None = None, own_thread: bool = False):
        """``rows_per_step`` 0: one message per step (no aggregation); ``own_thread``: every step
        on the stepper thread (many callers' threads), else on the caller's."""
        self._train_messages = train_messages
        self.rows_per_step = int(rows_per_step)
        self.wait_s = float(wait_s)
        self._cond = threading.Condition(lock or threading.RLock())
        self._pending: list[_Queued] = []
        self.steps = 0
        self.messages = 0
        self.own_thread = own_thread
        self.idle_exit_s = IDLE_EXIT_S
        self._stepper: threading.Thread | None = None

    def _queued_rows(self) -> int:
        return sum(len(q.batch) for q in self._pending)

    def _ready(self, now: float) -> bool:
        if not self._pending:
            return False
        if self.rows_per_step == 0 or self._queued_rows() >= self.rows_per_step:
            return True
        return now - self._pending[0].arrived >= self.wait_s

    def _take(self) -> list[_Queued]:
        """The next step's messages: from the head of the queue, while they fit (at least one)."""
        taken, rows = [self._pending[0]], len(self._pending[0].batch)
        if self.rows_per_step:
            for q in self._pending[1:]:
                if rows + len(q.batch) > self.rows_per_step:
                    break
                taken.append(q)
                rows += len(q.batch)
        del self._pending[: len(taken)]
        return taken

    def _step(self) -> None:
        """One step on the messages at the head of the queue (under the lock); every caller of
        the step hears of its answer, or of its error."""
        taken = self._take()
        try:
            results = self._train_messages([q.batch for q in taken])
            for q, r in zip(taken, results):
                q.result = r
        except BaseException as exc:
            for q in taken:
                q.error = exc
        self.steps += 1
        self.messages += len(taken)
        self._cond.notify_all()

    def _until_ready(self, now: float) -> float:
        return max(1e-4, self._pending[0].arrived + self.wait_s - now)

    def train(self, batch: ProtectedBatch) -> dict:
        """Queue ``batch``; return its answer once a step that holds it has run."""
        with self._cond:  # queued (and its wait counted) from when the step before has ended
            mine = _Queued(batch, time.monotonic())
            self._pending.append(mine)
            if self.own_thread and self._stepper is None:
                self._stepper = threading.Thread(target=self._step_loop, name="fr-step", daemon=True)
                self._stepper.start()
            self._cond.notify_all()
            while mine.result is None and mine.error is None:
                now = time.monotonic()
                if self.own_thread:
                    self._cond.wait()
                elif self._ready(now):
                    self._step()
                else:
                    self._cond.wait(timeout=self._until_ready(now))
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _step_loop(self) -> None:
        """The stepper: every step, on this one thread, until ``idle_exit_s`` pass without a message."""
        with self._cond:
            idle_since = time.monotonic()
            while True:
                now = time.monotonic()
                if self._ready(now):
                    self._step()
                    idle_since = time.monotonic()
                elif self._pending:
                    self._cond.wait(timeout=self._until_ready(now))
                    idle_since = time.monotonic()
                elif now - idle_since >= self.idle_exit_s:
                    self._stepper = None  # under the lock: the next ``train`` starts a new one
                    return
                else:
                    self._cond.wait(timeout=self.idle_exit_s - (now - idle_since))
