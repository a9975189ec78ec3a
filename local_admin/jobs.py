"""Background rendering in the admin process: one worker thread, one job at a time.

Saving a circle queues a job: render every prompt (Piper, slow to import, so never in a request
thread), then make the new version live. The pages poll `Job.as_dict()` for the progress bar.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


def release_memory() -> None:
    """After Piper: drop the voice and give freed heap back to the system (about 80 MB here),
    so the admin service does not sit on the synthesizer's memory between saves."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: reused, just not returned
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def failure_message(error: BaseException) -> str:
    """Why a job failed, as the job keeps it: the error's device.problems.Problem when it has one
    (audio.render.RenderError), so the job page can say it in the reader's language
    (local_admin.i18n.problem_text), else its text. Never the exception itself: its traceback
    would keep the voice's memory alive."""
    from device.problems import Problem

    first = error.args[0] if error.args else None
    return first if isinstance(first, Problem) else (str(error) or error.__class__.__name__)


@dataclass
class Job:
    id: str
    script: str
    version: int
    state: str = "queued"  # queued | running | done | failed
    done: int = 0
    total: int = 0
    current: str = ""
    reused: int = 0
    message: str = ""  # a Problem when the job failed with one: translate it where it is shown
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def percent(self) -> int:
        if self.state == "done":
            return 100
        return int(100 * self.done / self.total) if self.total else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "script": self.script,
            "version": self.version,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "current": self.current,
            "reused": self.reused,
            "message": self.message,
        }


class RenderQueue:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._queue: queue.Queue[tuple[Job, Callable[[Job], str]]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, script: str, version: int, work: Callable[[Job], str]) -> Job:
        """`work(job)` renders (updating job.done/total) and returns the success message."""
        job = Job(id=uuid.uuid4().hex[:12], script=script, version=version)
        with self._lock:
            self.jobs[job.id] = job
            old = sorted(self.jobs.values(), key=lambda j: j.started)[:-50]
            for stale in old:
                self.jobs.pop(stale.id, None)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="circlebox-render", daemon=True
                )
                self._thread.start()
        self._queue.put((job, work))
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def active_for(self, script: str) -> Job | None:
        with self._lock:
            for job in self.jobs.values():
                if job.script == script and job.state in ("queued", "running"):
                    return job
        return None

    def _run(self) -> None:
        while True:
            job, work = self._queue.get()
            job.state = "running"
            try:
                job.message = work(job)
                job.done = job.total
                job.state = "done"
            except Exception as exc:  # shown to the person who saved, nothing is lost
                log.exception("render job %s failed", job.id)
                job.state = "failed"
                job.message = failure_message(exc)
            finally:
                job.finished = time.time()
                release_memory()
                self._queue.task_done()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """For tests and benches: wait until no job is queued or running."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(j.state in ("done", "failed") for j in list(self.jobs.values())):
                return True
            time.sleep(0.05)
        return False
