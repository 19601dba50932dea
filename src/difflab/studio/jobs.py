"""The studio's jobs: long work (sampling, restoring) runs on a fixed number of worker threads, so requests queue
instead of oversubscribing the cores; each job keeps its events (progress, images, the result) for any number of
listeners, can be cancelled while queued or running, and is forgotten some time after it ends (bounded memory)."""
from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from difflab.errors import UserError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
ENDED = (DONE, FAILED, CANCELLED)


class Cancelled(Exception):
    """Raised inside a job's work when its cancel flag is seen (at the next step)."""


@dataclass
class Job:
    """One unit of work and what it has said so far; `events` grows until the job ends."""

    id: str
    kind: str
    work: Callable[["Job"], dict]
    state: str = QUEUED
    events: list[dict] = field(default_factory=list)
    result: dict | None = None
    error: str | None = None
    created: float = field(default_factory=time.monotonic)
    ended: float | None = None
    cancel_flag: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def emit(self, event: dict) -> None:
        """Add an event (progress, an image) and wake the listeners; raise Cancelled if the job was cancelled."""
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()
        if self.cancel_flag.is_set():
            raise Cancelled()

    def finish(self, state: str, result: dict | None = None, error: str | None = None) -> None:
        with self.changed:
            self.state, self.result, self.error, self.ended = state, result, error, time.monotonic()
            self.events.append({"type": state, **({"result": result} if result else {}),
                                **({"error": error} if error else {})})
            self.changed.notify_all()

    def follow(self, timeout: float = 15.0) -> Iterator[dict]:
        """Every event from the first, as it comes; a {'type': 'ping'} when nothing came for `timeout` seconds (so
        a closed connection is noticed); ends after the final event."""
        seen = 0
        while True:
            with self.changed:
                if seen == len(self.events) and self.state not in ENDED:
                    self.changed.wait(timeout)
                new, ended = self.events[seen:], self.state in ENDED
            seen += len(new)
            yield from new
            if ended and not new:
                return
            if not new:
                yield {"type": "ping"}

    def status(self) -> dict:
        return {"id": self.id, "kind": self.kind, "state": self.state, "error": self.error,
                "events": len(self.events), "result": self.result}


class JobQueue:
    """`workers` threads take jobs in order; at most `max_waiting` wait (a full queue is refused, not grown); ended
    jobs are kept `keep_seconds` for late listeners, then dropped."""

    def __init__(self, workers: int = 1, max_waiting: int = 16, keep_seconds: float = 600.0):
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.waiting: queue.Queue[Job] = queue.Queue()
        self.max_waiting, self.keep_seconds = max_waiting, keep_seconds
        self._ids = itertools.count(1)
        self.threads = [threading.Thread(target=self._worker, daemon=True, name=f"studio-worker-{k}")
                        for k in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, kind: str, work: Callable[[Job], dict]) -> Job:
        self._forget_old()
        with self.lock:
            queued = sum(j.state == QUEUED for j in self.jobs.values())
            if queued >= self.max_waiting:
                raise UserError(f"{queued} jobs are already waiting: try again when one has finished")
            job = Job(f"j{next(self._ids)}", kind, work)
            self.jobs[job.id] = job
        self.waiting.put(job)
        return job

    def get(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, a running one at its next step."""
        job = self.get(job_id)
        job.cancel_flag.set()
        with self.lock:
            if job.state == QUEUED:
                job.finish(CANCELLED)
        return job

    def counts(self) -> dict[str, int]:
        with self.lock:
            states = [j.state for j in self.jobs.values()]
        return {s: states.count(s) for s in (QUEUED, RUNNING, DONE, FAILED, CANCELLED)}

    def _worker(self) -> None:
        while True:
            job = self.waiting.get()
            with self.lock:
                if job.state != QUEUED:  # cancelled while waiting
                    continue
                job.state = RUNNING
            try:
                result = job.work(job)
            except Cancelled:
                job.finish(CANCELLED)
            except UserError as e:
                job.finish(FAILED, error=str(e))
            except Exception as e:  # noqa: BLE001 - a job's failure is reported to its page, the server keeps serving
                job.finish(FAILED, error=f"{type(e).__name__}: {e}")
            else:
                job.finish(CANCELLED if job.cancel_flag.is_set() else DONE, result)

    def _forget_old(self) -> None:
        now = time.monotonic()
        with self.lock:
            for k in [k for k, j in self.jobs.items() if j.ended is not None and now - j.ended > self.keep_seconds]:
                del self.jobs[k]
