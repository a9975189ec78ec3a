"""A tiny course for the course tests: 2 sessions, a bus stop, 1 more session, short circles.

Rendered once (Piper, real voice) into pytest's cache directory on top of the rendered default
circle's cache (the box's own prompts are reused from there); each test copies it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import make_config

TINY_CIRCLE = """script: tiny-circle
title: Tiny circle
version: 1
language: en_US
voice: en_US-joe-medium
steps:
  - id: hello
    core: true
    say: "Hello, group."
  - id: bye
    say: "Goodbye for today."
    then: continue
"""

TINY_STOP = """script: tiny-stop
title: Tiny bus stop
version: 1
language: en_US
voice: en_US-joe-medium
steps:
  - id: farewell
    core: true
    say: "Goodbye to those who leave."
    then: continue
  - id: welcome
    core: true
    say: "Welcome to those who join."
"""

TINY_COURSE = """course: tiny-course
title: Tiny course
version: 1
language: en
bus_stop_circle: tiny-stop
sessions:
  - circle: tiny-circle
    repeat: 2
    bus_stop_after: true
  - circle: tiny-circle
"""

COURSE_ID = "tiny-course"


def write_course_files(data: Path) -> None:
    (data / "scripts").mkdir(parents=True, exist_ok=True)
    (data / "courses").mkdir(parents=True, exist_ok=True)
    (data / "scripts" / "tiny-circle.yaml").write_text(TINY_CIRCLE)
    (data / "scripts" / "tiny-stop.yaml").write_text(TINY_STOP)
    (data / "courses" / f"{COURSE_ID}.yaml").write_text(TINY_COURSE)


@pytest.fixture(scope="session")
def rendered_course(pytestconfig, rendered_default) -> Path:
    """A data folder with the tiny course, its circles and its announcements rendered."""
    from device.course import resolve_course
    from device.course_play import ensure_course_rendered

    data = Path(pytestconfig.cache.mkdir("rendered-course"))
    if not (data / "cache").exists():
        shutil.copytree(rendered_default / "cache", data / "cache")
    write_course_files(data)
    config = make_config(data)
    ensure_course_rendered(resolve_course(COURSE_ID, data).course, config, data)
    return data


def copy_course_data(rendered: Path, data: Path) -> Path:
    shutil.copytree(rendered, data, ignore=shutil.ignore_patterns("state", "run", "*.sqlite*"))
    return data


@pytest.fixture
def course_data(tmp_path, rendered_course) -> Path:
    """A fresh data folder of its own with the rendered tiny course."""
    return copy_course_data(rendered_course, tmp_path / "data")
