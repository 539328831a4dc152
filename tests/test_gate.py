"""The fair compute gate: interactive work overtakes long work between its chunks, never inside one."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from dashboard.gate import INTERACTIVE, LONG, ComputeGate


def test_a_short_job_overtakes_a_long_one_between_its_chunks():
    gate = ComputeGate(1, grace=0)
    events: list[str] = []
    chunk_started = threading.Event()
    go_on = threading.Event()

    def long_job() -> None:
        ticket = gate.ticket("Occlusion", LONG)
        gate.acquire(ticket)
        try:
            for i in range(4):
                events.append(f"long chunk {i}")
                if i == 1:
                    chunk_started.set()  # the short job arrives during chunk 1
                    go_on.wait(5)
                ticket.between_chunks((i + 1) / 4)
        finally:
            gate.release(ticket)

    def short_job() -> None:
        ticket = gate.ticket("Running the model", INTERACTIVE)
        gate.acquire(ticket)
        try:
            events.append("short")
        finally:
            gate.release(ticket)

    long_thread = threading.Thread(target=long_job)
    long_thread.start()
    assert chunk_started.wait(5)
    short_thread = threading.Thread(target=short_job)
    short_thread.start()
    while not gate.interactive_waiting():  # it queues behind the running chunk...
        time.sleep(0.001)
    assert "short" not in events  # ...which is never interrupted
    go_on.set()
    short_thread.join(5)
    long_thread.join(5)
    assert events == ["long chunk 0", "long chunk 1", "short", "long chunk 2", "long chunk 3"]


def test_waiting_jobs_are_served_interactive_first_then_in_arrival_order():
    gate = ComputeGate(1, grace=0)
    holder = gate.ticket("first", INTERACTIVE)
    gate.acquire(holder)
    order: list[str] = []
    tickets = [gate.ticket("long A", LONG), gate.ticket("short B", INTERACTIVE), gate.ticket("short C", INTERACTIVE)]
    threads = []
    for t in tickets:
        def run(t=t) -> None:
            gate.acquire(t)
            order.append(t.label)
            gate.release(t)
        threads.append(threading.Thread(target=run))
        threads[-1].start()
        while t not in gate._waiting:  # queue them in this order
            time.sleep(0.001)
    gate.release(holder)
    for th in threads:
        th.join(5)
    assert order == ["short B", "short C", "long A"]


def _in_another_thread(gate: ComputeGate, label: str) -> None:
    """An interactive job of another session (another thread): acquire, release."""
    def run() -> None:
        ticket = gate.ticket(label, INTERACTIVE)
        gate.acquire(ticket)
        gate.release(ticket)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)


def test_long_work_leaves_a_grace_period_after_interactive_work():
    gate = ComputeGate(1, grace=0.2)
    _in_another_thread(gate, "trace")
    long_ticket = gate.ticket("Occlusion", LONG)
    assert not gate.acquire(long_ticket, timeout=0.01)  # the page's next job may still come
    follow_up = gate.ticket("map", INTERACTIVE)
    assert gate.acquire(follow_up, timeout=0.01)  # ...and it goes first, with no chunk in between
    gate.release(follow_up)
    assert gate.acquire(long_ticket, timeout=5)  # after the grace period, the long job goes on
    gate.release(long_ticket)


def test_the_waiting_message_says_what_it_waits_for():
    gate = ComputeGate(1)
    long_ticket = gate.ticket("Occlusion", LONG)
    gate.acquire(long_ticket)
    long_ticket.between_chunks(0.25)
    waiting = gate.ticket("Running the model", INTERACTIVE)
    assert not gate.acquire(waiting, timeout=0.01)  # keeps its place
    message = gate.describe_wait(waiting)
    assert "another session's Occlusion" in message and "current step" in message
    gate.release(long_ticket)
    assert gate.acquire(waiting, timeout=1)
    gate.release(waiting)
    assert not gate.holders()


def test_bad_arguments():
    with pytest.raises(ValueError, match="slots"):
        ComputeGate(0)
    with pytest.raises(ValueError, match="grace"):
        ComputeGate(1, grace=-1)
    with pytest.raises(ValueError, match="priority"):
        ComputeGate(1).ticket("x", 7)


def test_two_equal_tickets_from_different_sessions_keep_their_own_places():
    # Two sessions asking for the same job at once hold tickets equal in every field; the gate must tell
    # them apart by who holds them, or one session's release takes the other's place in the queue.
    gate = ComputeGate(1, grace=0)
    holder = gate.ticket("Occlusion", LONG)
    assert gate.acquire(holder)
    mine = gate.ticket("Running the model", INTERACTIVE)
    assert not gate.acquire(mine, timeout=0)  # queued behind the holder
    theirs = dataclasses.replace(mine)  # another session's ticket, equal to mine field by field
    assert theirs is not mine
    assert theirs != mine and len({mine, theirs}) == 2
    gate.release(theirs)  # it never queued: releasing it must leave my place alone
    assert gate.interactive_waiting()
    assert gate.describe_wait(gate.ticket("later", LONG)).endswith("1 more job ahead of you…")
    gate.release(holder)
    assert gate.acquire(mine, timeout=1)
    assert gate.holders() == [mine]
    gate.release(mine)


def _long_job(gate: ComputeGate, label: str, chunks: int, events: list[str], *, seconds: float = 0.0,
              hold: threading.Event | None = None, arrived: threading.Event | None = None) -> None:
    """A long job of ``chunks`` chunks; chunk 0 waits for ``hold`` (after setting ``arrived``)."""
    ticket = gate.ticket(label, LONG)
    gate.acquire(ticket)
    try:
        for i in range(chunks):
            events.append(f"{label} {i}")
            if i == 0 and hold is not None:
                arrived.set()
                hold.wait(5)
            time.sleep(seconds)
            ticket.between_chunks((i + 1) / chunks)
    finally:
        gate.release(ticket)


def test_a_short_long_job_overtakes_a_long_one_that_has_been_served_longer():
    # The demo model's trust checks (a long job of a second in all) must not wait for the whole of another
    # session's Occlusion on DenseNet-121: least-served first, so they go at its next chunk.
    gate = ComputeGate(1, grace=0)
    events: list[str] = []
    arrived, go_on = threading.Event(), threading.Event()
    occlusion = threading.Thread(target=_long_job, args=(gate, "occlusion", 5, events),
                                 kwargs={"seconds": 0.02, "hold": go_on, "arrived": arrived})
    occlusion.start()
    assert arrived.wait(5)
    time.sleep(0.05)  # the Occlusion has been served for a while
    checks = threading.Thread(target=_long_job, args=(gate, "checks", 3, events))
    checks.start()
    while not gate._waiting:  # the checks queue behind the running chunk
        time.sleep(0.001)
    go_on.set()
    checks.join(5)
    occlusion.join(5)
    assert events == ["occlusion 0", "checks 0", "checks 1", "checks 2", "occlusion 1", "occlusion 2",
                      "occlusion 3", "occlusion 4"]


def test_a_long_job_yields_only_while_a_less_served_one_waits():
    gate = ComputeGate(1, grace=0)
    first = gate.ticket("first", LONG)
    second = gate.ticket("second", LONG)
    assert gate.acquire(first)
    assert not gate.acquire(second, timeout=0)  # queued, never served: it goes first at the next chunk
    assert gate.should_yield(first)
    gate.release(second)
    assert not gate.should_yield(first)  # nobody waits
    gate.release(first)
    assert not gate.holders()


def test_the_waiting_message_of_a_less_served_long_job_says_it_goes_next():
    gate = ComputeGate(1, grace=0)
    occlusion = gate.ticket("Occlusion", LONG)
    gate.acquire(occlusion)
    time.sleep(0.02)
    occlusion.between_chunks(0.1)
    checks = gate.ticket("Checking the map", LONG)
    assert not gate.acquire(checks, timeout=0.01)
    assert "to finish its current step" in gate.describe_wait(checks)
    gate.release(occlusion)
    assert gate.acquire(checks, timeout=1)
    gate.release(checks)


def test_the_long_work_of_the_same_run_does_not_wait_for_the_grace_period():
    # A page run is one thread: its own trust checks right after its map are not another run's chunk.
    gate = ComputeGate(1, grace=30)
    short = gate.ticket("map", INTERACTIVE)
    gate.acquire(short)
    gate.release(short)
    checks = gate.ticket("Checking the map", LONG)
    assert gate.acquire(checks, timeout=1)
    gate.release(checks)
    _in_another_thread(gate, "another session's trace")
    assert not gate.acquire(checks, timeout=0.05)  # now the grace is for that other run
    gate.release(checks)


def _long_in_another_thread(gate: ComputeGate, label: str) -> None:
    def run() -> None:
        ticket = gate.ticket(label, LONG)
        gate.acquire(ticket)
        gate.release(ticket)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)


def test_any_job_of_another_run_ending_starts_the_grace_period():
    # The demo model's checks end, then their run draws the curves: another session's Occlusion waits a moment.
    gate = ComputeGate(1, grace=30)
    _long_in_another_thread(gate, "Checking the map")
    occlusion = gate.ticket("Occlusion", LONG)
    assert not gate.acquire(occlusion, timeout=0.05)
    gate.release(occlusion)


def test_a_long_job_handing_over_between_chunks_starts_no_grace_period():
    gate = ComputeGate(1, grace=1.0)
    done = threading.Event()
    holder_ready = threading.Event()

    def occlusion() -> None:
        ticket = gate.ticket("Occlusion", LONG)
        gate.acquire(ticket)
        holder_ready.set()
        time.sleep(0.05)  # served for a while
        while not gate._waiting:
            time.sleep(0.001)
        ticket.between_chunks(0.5)  # hands over to the less-served job, then queues again
        gate.release(ticket)
        done.set()

    thread = threading.Thread(target=occlusion)
    thread.start()
    assert holder_ready.wait(5)
    checks = gate.ticket("Checking the map", LONG)
    assert gate.acquire(checks, timeout=0.5)  # at once, not after the grace period
    gate.release(checks)  # the end of a job: now the Occlusion waits the grace period, then goes on
    thread.join(5)
    assert done.is_set()
