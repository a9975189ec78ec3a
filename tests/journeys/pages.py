"""What people do on the admin page, in Chromium (Playwright), named as they would say it."""

from __future__ import annotations

from journeys.harness import PASSWORD, Box


def log_in(page, box: Box) -> None:
    """The first time with the box's setup code (as the technician tells it), then the password."""
    from device.datafolder import DataFolder

    page.goto(box.admin_url + "/")
    if page.url.endswith("/setup"):
        page.fill("#code", DataFolder(box.data).setup_code.read_text(encoding="utf-8").strip())
        page.fill("#password", PASSWORD)
        page.fill("#confirm", PASSWORD)
        page.click("button[type=submit]")
    elif "/login" in page.url:  # /login?next=/ once the password is set
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
    page.wait_for_url(box.admin_url + "/panel/")


def press_on_panel(page, box: Box, action: str) -> None:
    """Open the live panel (if not there) and press one of its on-screen buttons."""
    if not page.url.startswith(box.admin_url + "/panel/"):
        page.goto(box.admin_url + "/panel/")
    page.locator(f"button[data-action={action}]").first.click()


def flash_text(page) -> str:
    """The page's messages to the user (after a save or a choice)."""
    return " | ".join(t.strip() for t in page.locator(".flash:visible").all_inner_texts())


def use_on_the_box(page, box: Box, title: str) -> str:
    """Circles page: press "Use on the box" on the circle with this title; the page's answer."""
    page.goto(box.admin_url + "/circles/")
    card = page.locator("li.circle", has_text=title)
    card.get_by_role("button", name="Use on the box").click()
    page.wait_for_load_state()
    return flash_text(page)
