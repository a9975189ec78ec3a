"""On a phone (390 px wide, on the box's hotspot): the live panel and the usage page are whole,
with nothing cut off at the side and no sideways scrolling of the page."""

from __future__ import annotations

from journeys.pages import log_in

# elements of a page that lie (partly) outside the screen's width, described for a message
OUTSIDE = """(selector) => {
  const width = document.documentElement.clientWidth;
  const hiddenOnPurpose = (e) => {  // for screen readers only: clipped to nothing, or in such a box
    for (let a = e; a; a = a.parentElement) {
      const r = a.getBoundingClientRect();
      if (r.width <= 1 || r.height <= 1 || getComputedStyle(a).clip !== "auto") return true;
    }
    return false;
  };
  return [...document.querySelectorAll(selector)]
    .filter(e => e.offsetParent !== null && !hiddenOnPurpose(e))
    .map(e => [e, e.getBoundingClientRect()])
    .filter(([e, r]) => r.left < -1 || r.right > width + 1)
    .map(([e, r]) => `${e.tagName.toLowerCase()} "${e.innerText.trim().slice(0, 30)}" `
                     + `from ${Math.round(r.left)} to ${Math.round(r.right)} px`);
}"""


def add_circles_held(data, count: int = 4) -> None:
    """Circles the box has held, in its usage store (as the runtime records them)."""
    from device.datafolder import DataFolder
    from device.usage import UsageStore

    store = UsageStore(DataFolder(data).usage)
    try:
        for i in range(count):
            store.upsert({
                "id": f"phone{i}", "box": "clinic-north", "script": "three-step-circle", "script_version": 1,
                "started_at": f"2026-02-{10 + i:02d}T09:00:00+00:00",
                "ended_at": f"2026-02-{10 + i:02d}T10:05:00+00:00",
                "duration_s": 3900.0, "completed": True, "steps_planned": 6, "steps_delivered": 6,
                "core_planned": 4, "core_delivered": 4, "repeats": 1, "pauses": 0, "help_count": 0,
                "attendance": 12, "clock_trusted": i != 1, "rounds": [{"step": "share", "turns": 12, "passes": 1}],
            })
    finally:
        store.close()


def sideways(page) -> int:
    """How many pixels the page scrolls sideways (0 when it fits the screen)."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def test_the_live_panel_fits_a_phone(box, phone):
    box.start_runtime()
    box.start_admin()
    log_in(phone, box)
    phone.goto(box.admin_url + "/panel/")
    phone.locator("button[data-action=next]").first.wait_for()
    assert sideways(phone) == 0, f"the panel scrolls {sideways(phone)} px sideways on a 390 px phone"
    cut = phone.evaluate(OUTSIDE, "main button, main select, #status dd")
    assert cut == [], f"on a 390 px phone these are cut off: {cut}"


def test_the_usage_table_is_readable_on_a_phone(box, phone):
    add_circles_held(box.data)
    box.start_runtime()
    box.start_admin()
    log_in(phone, box)
    phone.goto(box.admin_url + "/usage/")
    cells = phone.locator("main table td")
    cells.first.wait_for()
    assert sideways(phone) == 0, f"the usage page scrolls {sideways(phone)} px sideways on a 390 px phone"
    cut = phone.evaluate(OUTSIDE, "main table th, main table td")
    assert cut == [], f"on a 390 px phone the usage table is cut off: {cut[:8]}"
