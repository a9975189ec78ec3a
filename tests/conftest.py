"""Shared test set-up: no real sound card, no GPIO, no network, ever."""

from __future__ import annotations

import os

# pygame must never open a real device in tests: SDL's disk driver writes what was played.
os.environ.setdefault("SDL_AUDIODRIVER", "disk")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")

import shutil
from pathlib import Path

import pytest

from device.content import cache_dir, ensure_rendered, resolve_script
from device.script import packaged_scripts_dir

DEFAULT_SCRIPT = "three-step-circle"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's, driven by Playwright (no downloaded browser)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the whole run: Playwright's sync API allows one per thread."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def rendered_default(pytestconfig) -> Path:
    """A data directory with the default circle rendered by the real Piper voice.

    Kept in pytest's cache directory between local runs; prompts are cached by a hash of what
    they are made of, so a changed prompt is always rendered again. A clean clone renders all.
    """
    data = Path(pytestconfig.cache.mkdir("rendered-default"))
    loaded = resolve_script(DEFAULT_SCRIPT, data)
    ensure_rendered(loaded, cache_dir(data), voices_dir=None, sample_rate=22050,
                    loudness_lufs=-18.0, quiet=True)
    return data


@pytest.fixture
def box_data(tmp_path, rendered_default) -> Path:
    """A fresh data directory of its own, with a copy of the rendered cache and the script."""
    data = tmp_path / "data"
    shutil.copytree(rendered_default / "cache", data / "cache")
    (data / "scripts").mkdir(parents=True)
    shutil.copy(packaged_scripts_dir() / f"{DEFAULT_SCRIPT}.yaml", data / "scripts")
    return data


def make_config(data: Path, **sections):
    """A Config for tests: package defaults, a data dir, mock pins, no /etc layer."""
    from device.config import load_config

    overrides = {"paths": {"data_dir": str(data)}, "buttons": {"pin_factory": "mock"}}
    for key, value in sections.items():
        overrides.setdefault(key, {}).update(value)
    return load_config(etc_path=None, environ={}, overrides=overrides)


# the tiny rendered course of the course tests (tests/course_fixtures.py)
from course_fixtures import course_data, rendered_course  # noqa: E402, F401
