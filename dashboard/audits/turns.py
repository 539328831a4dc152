"""A run's progress callback that takes turns on the compute gate for the run's thread.

The callback holds a LONG ticket of the compute gate while the run works and offers its slot between
batches, so other sessions' pages go first; the ticket is released when the run ends, fails or is stopped.
"""

from __future__ import annotations

import threading

from densenet import audit
from densenet.explain import Cancelled

from ..gate import LONG, ComputeGate

#: Ends of a run: the callback releases its ticket on these.
FINAL_STATES = ("done", "stopped", "failed")


class GateTurns:
    """A run's ``on_progress`` callback: it takes turns on the compute gate for the run's thread.

    The first call waits for a slot (blocking in the callback pauses the run, which is what the
    library promises); each later call is between two batches, where the slot goes to waiting
    interactive work first (:meth:`densenet.gate.Ticket.between_chunks`). A final state releases
    the ticket; :meth:`stop` makes the next call raise :class:`~densenet.explain.Cancelled`,
    also while the run still waits for its first slot.
    """

    def __init__(self, gate: ComputeGate, label: str = "dataset audit", *, poll: float = 0.25) -> None:
        self.gate = gate
        self.ticket = gate.ticket(label, LONG)
        self.poll = poll
        self.stopping = threading.Event()
        self._held = False
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._held

    def __call__(self, p: audit.Progress) -> None:
        if p.state in FINAL_STATES:
            self.release()
            return
        if self.stopping.is_set():
            self.release()
            raise Cancelled("stopped")
        if not self._held:
            while not self.gate.acquire(self.ticket, timeout=self.poll):
                if self.stopping.is_set():
                    self.release()
                    raise Cancelled("stopped")
            self._held = True
        else:
            self.ticket.between_chunks(p.fraction)

    def stop(self) -> None:
        self.stopping.set()

    def release(self) -> None:
        """Give the slot back (or leave the queue); safe to call twice and from any thread."""
        with self._lock:
            self.gate.release(self.ticket)
            self._held = False
