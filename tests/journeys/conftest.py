"""Fixtures for the journeys: a box (runtime and admin page as processes sharing a data
folder), one Chromium for the whole session, and the box's logs printed when a journey fails."""

from __future__ import annotations

import pytest

from journeys.harness import Box, new_data_folder

LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"journey_{report.when}", report)
    return report


@pytest.fixture
def box(request, tmp_path, rendered_default):
    """A fresh box: a data folder with the packaged circles rendered; the journey starts the
    services it needs (box.start_runtime(), box.start_admin())."""
    work = tmp_path / "box"
    work.mkdir()
    the_box = Box(new_data_folder(tmp_path / "data", rendered_default), work)
    yield the_box
    the_box.stop()
    failed = any(getattr(getattr(request.node, f"journey_{when}", None), "failed", False)
                 for when in ("setup", "call"))
    if failed:
        print(the_box.logs())


@pytest.fixture(scope="session")
def browser(chromium):
    """The run's one Chromium (tests/conftest.py)."""
    return chromium


def open_page(browser, viewport: dict):
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


@pytest.fixture
def page(browser):
    """A laptop-sized Chromium page of its own (cookies included)."""
    the_page = open_page(browser, LAPTOP)
    yield the_page
    the_page.context.close()


@pytest.fixture
def phone(browser):
    """A Chromium page 390 px wide, as a phone on the box's hotspot."""
    the_page = open_page(browser, PHONE)
    yield the_page
    the_page.context.close()
