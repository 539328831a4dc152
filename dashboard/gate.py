"""Fair sharing of the compute slots: interactive work first, long work in chunks between it.

Sessions are threads of one server process. Torch work of two sessions at once makes both slow
(their OpenMP threads fight over the cores), so every job holds a slot of :class:`ComputeGate`
while it computes. A job is *interactive* (a trace, a CAM, a page: well under a second) or
*long* (Occlusion, Integrated Gradients, SmoothGrad, trust checks, audits: many chunks). A long
job calls :meth:`Ticket.between_chunks` after every chunk: when a job that goes first is waiting,
the long one hands its slot over and queues behind it, so a sample switch never waits for more
than one chunk. Waiting jobs are served interactive first; long jobs least-served first (the
seconds each has held a slot so far), then in arrival order. Least-served first matters because
a long job is not always long: the demo model's trust checks take a second in all, and served in
arrival order they would wait for the whole of another session's Occlusion on DenseNet-121 (25 s
for a sample switch, measured in two browsers); two long jobs of equal service take turns chunk
by chunk. A page run is several jobs in a row (a trace, a map, its checks, with drawing between
them): another run's long work waits a short grace period after a job ends, so that the next one
of the same run, and the drawing, do not queue behind another chunk (a run is one thread: the run's
own long work, its trust checks, does not wait; a long job handing over between chunks starts none).

No Streamlit here: the gate is tested with plain threads.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field

INTERACTIVE = 0
LONG = 1

#: Who held the slot, who waited how long, each chunk's duration: DEBUG records, off unless a handler
#: is attached (``DASHBOARD_GATE_LOG``, see ``runtime``; the browser benchmark reads them).
log = logging.getLogger("dashboard.gate")


@dataclass(eq=False)
class Ticket:
    """One job's hold on the gate (or its place in the queue).

    Tickets compare by identity: two sessions may ask for the same job at the same moment, and the gate
    finds and removes tickets with ``in`` and ``list.remove``, so value equality would let one session's
    release take the other's place.

    Attributes:
        label: what the job does, for the people waiting ("Occlusion", "Running the model").
        priority: :data:`INTERACTIVE` or :data:`LONG`.
        started: ``time.monotonic()`` when it first got a slot.
        fraction: the share of a long job done so far (from :meth:`between_chunks`).
        chunk_seconds: the mean duration of its chunks so far.
        service: seconds it has held a slot so far (until its last release); long jobs with less go first.
    """

    label: str
    priority: int
    gate: ComputeGate = field(repr=False)
    owner: int = field(default_factory=threading.get_ident, repr=False)
    seq: int = 0
    started: float | None = None
    fraction: float = 0.0
    chunk_seconds: float | None = None
    yields: int = 0
    service: float = 0.0
    _held_since: float | None = field(default=None, repr=False)
    _chunk_started: float | None = field(default=None, repr=False)
    _queued: float = field(default=0.0, repr=False)
    _chunks: int = field(default=0, repr=False)

    def between_chunks(self, fraction: float | None = None) -> None:
        """Record progress; hand the slot to waiting jobs that go first, then queue for it again."""
        now = time.monotonic()
        if self._chunk_started is not None:
            spent = now - self._chunk_started
            log.debug("chunk %s %.3fs fraction=%s", self.label, spent, fraction)
            self._chunks += 1
            mean = self.chunk_seconds or 0.0
            self.chunk_seconds = mean + (spent - mean) / self._chunks
        if fraction is not None:
            self.fraction = float(fraction)
        if self.gate.should_yield(self):
            self.yields += 1
            self.gate.release(self, handing_over=True)
            self.gate.acquire(self)
        self._chunk_started = time.monotonic()

    @property
    def seconds_left(self) -> float | None:
        """Rough time to completion, from the time spent and the fraction done."""
        if self.started is None or not 0 < self.fraction < 1:
            return None
        spent = time.monotonic() - self.started
        return spent * (1 - self.fraction) / self.fraction


class ComputeGate:
    """``slots`` jobs at a time, served interactive first, then first come first served."""

    def __init__(self, slots: int = 1, *, grace: float = 0.3) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        if grace < 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace}")
        self.slots = slots
        self.grace = grace
        self._last_end = float("-inf")
        self._last_end_owner: int | None = None
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._waiting: list[Ticket] = []
        self._holders: list[Ticket] = []

    def ticket(self, label: str, priority: int = INTERACTIVE) -> Ticket:
        if priority not in (INTERACTIVE, LONG):
            raise ValueError(f"priority must be INTERACTIVE or LONG, got {priority!r}")
        return Ticket(label=label, priority=priority, gate=self)

    def acquire(self, ticket: Ticket, timeout: float | None = None) -> bool:
        """Wait for a slot in turn; ``False`` if ``timeout`` seconds passed first. The place in the
        queue is kept until the slot is had or :meth:`release` is called: call again to go on waiting."""
        with self._cond:
            if ticket not in self._waiting:
                ticket.seq = next(self._seq)
                ticket._queued = time.monotonic()
                self._waiting.append(ticket)
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                now = time.monotonic()
                grace_left = (self._last_end + self.grace - now) if (
                    ticket.priority == LONG and ticket.owner != self._last_end_owner) else 0.0
                if len(self._holders) < self.slots and self._first() is ticket and grace_left <= 0:
                    break
                remaining = None if deadline is None else deadline - now
                if remaining is not None and remaining <= 0:
                    return False
                wait = [w for w in (remaining, grace_left if grace_left > 0 else None) if w is not None]
                self._cond.wait(min(wait) if wait else None)
            self._waiting.remove(ticket)
            self._holders.append(ticket)
            ticket._held_since = ticket._chunk_started = time.monotonic()
            log.debug("acquire %s (%s) after %.3fs", ticket.label, "long" if ticket.priority else "interactive",
                      time.monotonic() - ticket._queued)
            if ticket.started is None:
                ticket.started = time.monotonic()
            self._cond.notify_all()
            return True

    def release(self, ticket: Ticket, *, handing_over: bool = False) -> None:
        """Give up the slot (or the place in the queue). ``handing_over``: a long job between two of its
        chunks, which queues again at once (its run goes on, so no grace period starts)."""
        with self._cond:
            if ticket in self._holders:
                log.debug("release %s", ticket.label)
                self._holders.remove(ticket)
                if ticket._held_since is not None:
                    ticket.service += time.monotonic() - ticket._held_since
                    ticket._held_since = None
                if not handing_over:
                    self._last_end = time.monotonic()
                    self._last_end_owner = ticket.owner
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            self._cond.notify_all()

    @staticmethod
    def _order(ticket: Ticket) -> tuple[int, float, int]:
        """Who is served first: interactive, then long jobs least-served first, then arrival."""
        return ticket.priority, (ticket.service if ticket.priority == LONG else 0.0), ticket.seq

    def _first(self) -> Ticket | None:
        return min(self._waiting, key=self._order, default=None)

    @staticmethod
    def _served(ticket: Ticket) -> float:
        """Seconds ``ticket`` has held a slot, the current hold included."""
        held = 0.0 if ticket._held_since is None else time.monotonic() - ticket._held_since
        return ticket.service + held

    def _goes_before(self, waiting: Ticket, holder: Ticket) -> bool:
        if waiting.priority != holder.priority:
            return waiting.priority < holder.priority
        return waiting.priority == LONG and waiting.service < self._served(holder)

    def should_yield(self, ticket: Ticket) -> bool:
        """Whether a waiting job goes before ``ticket`` (which holds a slot): any interactive job
        before a long one, and a long job that has been served less."""
        with self._cond:
            return any(self._goes_before(t, ticket) for t in self._waiting)

    def interactive_waiting(self) -> bool:
        with self._cond:
            return any(t.priority == INTERACTIVE for t in self._waiting)

    def holders(self) -> list[Ticket]:
        with self._cond:
            return list(self._holders)

    def describe_wait(self, ticket: Ticket) -> str:
        """What ``ticket`` waits for, in words, with a rough time where one can be given."""
        with self._cond:
            holders = [(h, self._goes_before(ticket, h)) for h in self._holders]
            ahead = [t for t in self._waiting if t is not ticket and self._order(t) < self._order(ticket)]
        if not holders:
            return "Waiting for the model…"
        parts = []
        for h, first in holders:
            if h.priority == LONG and first:
                step = f"about {h.chunk_seconds:.1f} s" if h.chunk_seconds else "a moment"
                parts.append(f"another session's {h.label} to finish its current step ({step}; it then lets "
                             "you go first)")
            elif h.priority == LONG:
                left = h.seconds_left
                parts.append(f"another session's {h.label} ({h.fraction:.0%} done"
                             + (f", about {left:.0f} s left)" if left is not None else ")"))
            else:
                parts.append(f"another session's {h.label} (usually under a second)")
        queue = f"; {len(ahead)} more job{'s' if len(ahead) != 1 else ''} ahead of you" if ahead else ""
        return "Waiting for " + " and ".join(parts) + queue + "…"
