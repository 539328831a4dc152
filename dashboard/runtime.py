"""The machine the app runs on: the device, torch's threads, and jobs on the fair compute gate.

Several sessions each running torch with every thread made an 80 ms forward take seconds
(OpenMP threads busy-waiting on each other), so the gate's slots times the threads per job
never exceed the cores. Every piece of model work runs inside :func:`job`; long work reports
its chunks through the :class:`Job` it gets, which draws the progress bar, lets interactive
work of other sessions go first, and stops when the user cancels (a button click reruns the
script, and Streamlit stops the old run at its next call: the progress update).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import streamlit as st
import torch

import densenet
from densenet.device import describe

from .analysis import duration
from .gate import INTERACTIVE, LONG, ComputeGate, Ticket
from .gate import log as gate_log


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


CORES = _cores()
THREADS_PER_JOB = min(CORES, 4)  # beyond ~4 threads a DenseNet forward on CPU gains little
COMPUTE_SLOTS = max(1, CORES // THREADS_PER_JOB)
DEVICE = densenet.pick_device()
#: One gate per server process: this module is imported once, and every session's thread shares it.
GATE = ComputeGate(COMPUTE_SLOTS)
#: The most items (images, path points) in one chunk of long work.
CHUNK = 4 if DEVICE.type == "cpu" else 32
#: About the longest one chunk of long work should hold the slot: another session's sample switch waits
#: for the chunk under way. Four DenseNet-121 forwards took 0.4-1.8 s on two busy cores (two browsers,
#: BENCHMARKS.md), so the items per chunk follow the model's measured speed (:func:`chunk_size`).
CHUNK_SECONDS = 0.3

if os.environ.get("DASHBOARD_GATE_LOG"):  # a file for the gate's DEBUG records (benchmarks/bench_browser.py)
    _handler = logging.FileHandler(os.environ["DASHBOARD_GATE_LOG"])
    _handler.setFormatter(logging.Formatter("%(created).3f %(threadName)s %(message)s"))
    gate_log.addHandler(_handler)
    gate_log.setLevel(logging.DEBUG)

_local = threading.local()
_threads_set = threading.Lock()
_threads_done = False


def chunk_size(seconds_per_item: float | None) -> int:
    """Items per chunk of long work: as many as fit in :data:`CHUNK_SECONDS`, at least 1, at most :data:`CHUNK`.

    Args:
        seconds_per_item: the measured time of one item (a forward, or a forward and a backward);
            ``None`` when unknown (then :data:`CHUNK`).
    """
    if seconds_per_item is None or not seconds_per_item > 0:
        return CHUNK
    return max(1, min(CHUNK, int(CHUNK_SECONDS / seconds_per_item)))


def use_threads() -> None:
    """Give torch :data:`THREADS_PER_JOB` threads, once per process.

    Not at import: importing this module (a test, a benchmark, a notebook) leaves torch as it was;
    the app's entrypoint calls this, and :func:`job` makes sure before any model work.
    """
    global _threads_done
    with _threads_set:
        if not _threads_done:
            torch.set_num_threads(THREADS_PER_JOB)
            _threads_done = True


def device_label() -> str:
    if DEVICE.type != "cpu":
        return describe(DEVICE)
    return describe(DEVICE) + (f", {COMPUTE_SLOTS} job at a time" if COMPUTE_SLOTS == 1 else
                               f", {COMPUTE_SLOTS} jobs at a time")


@dataclass
class Job:
    """A running job: long ones call :meth:`progress` between their chunks."""

    label: str
    ticket: Ticket
    bar: object | None = None

    def progress(self, fraction: float) -> None:
        """Draw the bar, then let waiting interactive work go first."""
        if self.bar is not None:
            left = self.ticket.seconds_left
            self.bar.progress(min(max(fraction, 0.0), 1.0),
                              text=f"{self.label}: {fraction:.0%}" + (f", about {duration(left)} left" if left else ""))
        self.ticket.between_chunks(fraction)


@contextlib.contextmanager
def job(label: str, *, long: bool = False, bar: bool = False) -> Iterator[Job]:
    """Hold a compute slot for model work, with a spinner (and a progress bar for long work).

    Re-entrant within one thread: an inner job runs in the outer one's slot.
    """
    outer: Job | None = getattr(_local, "job", None)
    if outer is not None:
        yield outer
        return
    use_threads()
    ticket = GATE.ticket(label, LONG if long else INTERACTIVE)
    acquired = False
    try:
        # Any Streamlit call may raise StopException when the session reruns or closes (the
        # spinner's exit included): the release sits in the same try as every acquisition.
        acquired = GATE.acquire(ticket, timeout=0.05)
        if not acquired:
            note = st.empty()
            while not acquired:
                note.info(GATE.describe_wait(ticket), icon=":material/hourglass_top:")
                acquired = GATE.acquire(ticket, timeout=0.5)
            note.empty()
        current = Job(label, ticket, st.progress(0.0, text=f"{label}…") if bar else None)
        _local.job = current
        with st.spinner(f"{label}…"):
            yield current
        if current.bar is not None:
            current.bar.empty()
    finally:
        _local.job = None
        GATE.release(ticket)


def start_timer() -> None:
    st.session_state["_run_started"] = time.perf_counter()


def elapsed_ms() -> float:
    return (time.perf_counter() - st.session_state.get("_run_started", time.perf_counter())) * 1e3
