"""Reload latency: a circle saved on the admin page reaches the running box, with no restart.

`circlebox run` and `circlebox admin` run as separate processes sharing one data folder (as on a
box and in `make demo`; tests/journeys/harness.py). A circle is saved through the admin page's
editor over HTTP (as the browser posts it) and put on the box; then, RUNS times, one sentence of
it is changed and saved again. For each save:

- save → ready: from the save POST returning to the page's job saying the new version is ready
  (its changed prompt rendered by Piper; the rest reused);
- ready → loaded: from then to the runtime's `circle_loaded` journal line (the page tells the
  runtime over the control socket; the runtime also notices changed files itself);
- save → loaded: the two together, what the therapist waits for.

    .venv/bin/python -m bench.bench_reload [--runs 5]     # prints the BENCHMARKS.md line
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]  # the journeys' harness and the power-cut HTTP client

from journeys.harness import Box, new_data_folder  # noqa: E402
from powercut import ADMIN_CIRCLE, Http, admin_login, circle_form  # noqa: E402

LOADED = r"circle_loaded script=" + re.escape(ADMIN_CIRCLE)


def rendered_default() -> Path:
    """The packaged circle rendered (the tests' session render, made here if missing)."""
    from device.content import cache_dir, ensure_rendered, resolve_script

    data = ROOT / ".pytest_cache" / "d" / "rendered-default"
    loaded = resolve_script("three-step-circle", data)
    ensure_rendered(loaded, cache_dir(data), voices_dir=None, sample_rate=22050, loudness_lufs=-18.0, quiet=True)
    return data


def save_circle(http: Http, salt: str, first: bool) -> tuple[float, str]:
    """Post the editor's Save; the moment the POST returned and the job's id."""
    status, text = http.post(f"/circles/{ADMIN_CIRCLE}/edit", circle_form(salt, 0),
                             form_path="/circles/new" if first else f"/circles/{ADMIN_CIRCLE}/edit")
    returned = time.monotonic()
    job = re.search(r"/circles/jobs/([0-9a-f]+)", text) if status == 302 else None
    if job is None:
        raise RuntimeError(f"the save was not accepted ({status}): {text[:300]}")
    return returned, job.group(1)


def wait_job(http: Http, job: str, timeout: float = 300.0) -> float:
    """Until the page says the new version is ready; the moment it did."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        _, body = http.request(f"/circles/jobs/{job}.json")
        with contextlib.suppress(ValueError):
            state = json.loads(body).get("state")
            if state == "done":
                return time.monotonic()
            if state == "failed":
                raise RuntimeError(f"the save failed: {body[:300]}")
        time.sleep(0.02)
    raise RuntimeError(f"the save was not ready in {timeout:.0f} s")


def run(runs: int) -> dict:
    rendered = rendered_default()
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as tmp:
        work = Path(tmp) / "box"
        work.mkdir()
        box = Box(new_data_folder(Path(tmp) / "data", rendered), work)
        try:
            box.start_runtime()
            box.start_admin()
            http = Http(box.admin_url)
            admin_login(http, box.data)
            _, job = save_circle(http, "first", first=True)
            wait_job(http, job)
            mark = box.runtime.mark()
            status, text = http.post(f"/circles/{ADMIN_CIRCLE}/use", {}, form_path="/circles/")
            if status != 302:
                raise RuntimeError(f"'Use on the box' was refused ({status}): {text[:300]}")
            if box.runtime.wait_line(LOADED, mark, timeout=60) is None:
                raise RuntimeError(f"the box never loaded {ADMIN_CIRCLE}:\n{box.logs()}")
            rows = []
            for n in range(runs):
                mark = box.runtime.mark()
                returned, job = save_circle(http, f"run {n}", first=False)
                ready = wait_job(http, job)
                line = box.runtime.wait_line(LOADED, mark, timeout=60)
                if line is None:
                    raise RuntimeError(f"save {n}: the box did not load the new version:\n{box.logs()}")
                rows.append({"save_to_ready_s": ready - returned, "ready_to_loaded_s": line[0] - ready,
                             "save_to_loaded_s": line[0] - returned})
        finally:
            box.stop()
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]} | {"runs": runs, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    result = run(args.runs)
    print(json.dumps(result["rows"], indent=None))
    print(f"| reload: save on the admin page → the box has the new circle (median of {result['runs']}) "
          f"| save → loaded {result['save_to_loaded_s']:.2f} s (render {result['save_to_ready_s']:.2f} s, "
          f"ready → loaded {result['ready_to_loaded_s']:.2f} s) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
