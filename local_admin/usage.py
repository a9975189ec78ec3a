"""Usage: sessions table, charts (server-drawn SVG, no library), CSV and DHIS2 exports.

Test runs (a Start/Stop to try the box: shorter than `dhis2.min_circle_minutes`, or no core
step delivered) stay in the table, marked, but every total, chart and export leaves them out
unless "include test circles" is ticked (`?tests=1`). The rule is `device.usage.report_rows`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import OrderedDict

from flask import Blueprint, Response, render_template, request
from markupsafe import Markup, escape

from local_admin import backends, state
from local_admin.i18n import current_language, local_datetime, local_number, ngettext, translated
from local_admin.i18n import gettext as _

bp = Blueprint("usage", __name__, url_prefix="/usage")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _since() -> tuple[str | None, str | None]:
    since = request.args.get("since", "").strip()
    if not since:
        return None, None
    if not DATE.match(since):
        return None, _("write the date as YYYY-MM-DD, like 2026-01-31")
    try:
        dt.date.fromisoformat(since)
    except ValueError:
        return None, _("that date does not exist")
    return since, None


def _include_tests() -> bool:
    """The "include test circles" checkbox (a query argument, so links and downloads keep it)."""
    return request.args.get("tests") == "1"


def _min_minutes() -> float:
    from device.usage import min_circle_minutes

    return min_circle_minutes(state().config.dhis2 or {})


def _rows(since: str | None, include_tests: bool) -> list[dict]:
    """The records in the period, each marked with `test_reason`; test runs only if asked."""
    from device.usage import report_rows

    rows = backends.usage_sessions(state().data_dir, since=since)
    return report_rows(rows, _min_minutes(), include_tests=include_tests)


def people(row: dict) -> int:
    """The facilitator's count, else the box's estimate from the turns (as DHIS2 counts it)."""
    from device.usage import attendance_of

    return attendance_of(row)


def _week(started: str) -> str | None:
    try:
        day = dt.date.fromisoformat(str(started)[:10])
    except ValueError:
        return None
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def bar_chart(
    title: str,
    labels: list[str],
    series: list[tuple[str, list[float], str]],
    width: int = 380,
    height: int = 170,
) -> Markup:
    """A small grouped bar chart as inline SVG (accessible: a title and a table fallback)."""
    n = max(1, len(labels))
    top = max([1.0, *(v for _, values, _ in series for v in values)])
    left, bottom, pad = 30, 24, 6
    plot_w, plot_h = width - left - pad, height - bottom - pad
    group = plot_w / n
    bar = max(2.0, (group - 4) / max(1, len(series)))
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for frac in (0, 0.5, 1):
        y = pad + plot_h * (1 - frac)
        out.append(
            f'<line x1="{left}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccd" />'
        )
        out.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="12" text-anchor="end" '
            f'fill="#445">{top * frac:g}</text>'
        )
    for i, label in enumerate(labels):
        for j, (_name, values, colour) in enumerate(series):
            value = values[i] if i < len(values) else 0
            h = plot_h * value / top
            x = left + i * group + 2 + j * bar
            out.append(
                f'<rect x="{x:.1f}" y="{pad + plot_h - h:.1f}" width="{bar - 1:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(label)}: '
                f"{value:g}</title></rect>"
            )
        if n <= 8 or i % max(1, n // 6) == 0:
            out.append(
                f'<text x="{left + i * group + group / 2:.1f}" y="{height - 10}" '
                f'font-size="11" text-anchor="middle" fill="#445">{escape(label[-6:])}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))


def charts(rows: list[dict]) -> list[dict]:
    weeks: OrderedDict[str, dict[str, float]] = OrderedDict()
    for row in sorted(rows, key=lambda r: str(r.get("started_at") or "")):
        week = _week(row.get("started_at") or "")
        if week:
            w = weeks.setdefault(week, {"sessions": 0, "help": 0})
            w["sessions"] += 1
            w["help"] += int(row.get("help_count") or 0)
    week_labels = list(weeks)[-12:]
    recent = sorted(rows, key=lambda r: str(r.get("started_at") or ""))[-20:]
    recent_labels = [str(r.get("started_at") or "")[5:10] for r in recent]
    return [
        {
            "title": _("Circles per week"),
            "svg": bar_chart(
                _("Circles per week"),
                week_labels,
                [(_("circles"), [weeks[w]["sessions"] for w in week_labels], "#2d6a8e")],
            ),
            "legend": [(_("circles"), "#2d6a8e")],
        },
        {
            "title": _("People attending (last 20 circles)"),
            "svg": bar_chart(
                _("People attending"),
                recent_labels,
                [(_("people"), [float(people(r)) for r in recent], "#3a8f5c")],
            ),
            "legend": [(_("people"), "#3a8f5c")],
        },
        {
            "title": _("Core steps delivered vs planned"),
            "svg": bar_chart(
                _("Core steps delivered vs planned"),
                recent_labels,
                [
                    (_("planned"), [float(r.get("core_planned") or 0) for r in recent], "#b9c4d0"),
                    (_("delivered"), [float(r.get("core_delivered") or 0) for r in recent], "#2d6a8e"),
                ],
            ),
            "legend": [(_("planned"), "#b9c4d0"), (_("delivered"), "#2d6a8e")],
        },
        {
            "title": _("HELP presses per week"),
            "svg": bar_chart(
                _("HELP presses per week"),
                week_labels,
                [(_("help"), [weeks[w]["help"] for w in week_labels], "#c0392b")],
            ),
            "legend": [(_("help presses"), "#c0392b")],
        },
    ]


# -- courses ------------------------------------------------------------------------------------

ATTENDED, ESTIMATED, PLANNED_SLOT = "#3a8f5c", "#9cc9ab", "#eef1f4"
BUS_STOP_HELD, BUS_STOP_PLANNED = "#c0601a", "#e3b48f"


def meeting_label(meeting, sessions_total: int) -> str:
    """"Session 3 of 8" / "Bus stop after session 8" in the reader's words."""
    if meeting.bus_stop:
        if meeting.after is None:
            return _("Bus stop")
        return _("Bus stop after session %(n)s", n=meeting.after)
    if sessions_total:
        return _("Session %(n)s of %(total)s", n=meeting.number, total=sessions_total)
    return _("Session %(n)s", n=meeting.number)


def course_chart(summary, planned_stops: tuple[int, ...], table_id: str,
                 width: int = 380, height: int = 180) -> Markup:
    """People at each session of a course as inline SVG: one slot per planned session (a pale
    band; a bar when held, paler when the number is the box's estimate), a line at each bus stop
    (solid when passed, dashed while planned). The table `table_id` says the same in words."""
    sessions = summary.sessions
    slots = max([1, summary.sessions_total, *(m.number or 0 for m in sessions)])
    top = max([1, *(m.people for m in sessions)])
    left, bottom, pad, head = 30, 22, 6, 16
    plot_w, plot_h = width - left - pad, height - bottom - head
    slot = plot_w / slots
    title = _("People at each session of %(course)s", course=summary.course)
    held_words = _("%(held)s of %(total)s sessions held", held=summary.sessions_held,
                   total=summary.sessions_total)
    out = [
        f'<svg class="chart course-chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}. {escape(held_words)}" aria-describedby="{escape(table_id)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for frac in (0, 0.5, 1):
        y = head + plot_h * (1 - frac)
        out.append(f'<line x1="{left}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ccd" />')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="12" text-anchor="end" '
                   f'fill="#445">{top * frac:g}</text>')
    by_number = {m.number: m for m in sessions}
    for n in range(1, slots + 1):
        x = left + (n - 1) * slot
        out.append(f'<rect class="planned" x="{x + 1:.1f}" y="{head}" width="{slot - 2:.1f}" '
                   f'height="{plot_h}" fill="{PLANNED_SLOT}" />')
        meeting = by_number.get(n)
        if meeting is not None:
            h = plot_h * meeting.people / top
            colour = ATTENDED if meeting.people_counted else ESTIMATED
            words = ngettext("%(num)d person", "%(num)d people", meeting.people)
            if not meeting.people_counted:
                words = _("about %(people)s (the box's estimate)", people=words)
            out.append(
                f'<rect class="held" x="{x + 2:.1f}" y="{head + plot_h - h:.1f}" width="{max(1.0, slot - 4):.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(meeting_label(meeting, summary.sessions_total))}: '
                f"{escape(words)}</title></rect>")
            if slot >= 14:
                out.append(f'<text x="{x + slot / 2:.1f}" y="{head + plot_h - h - 3:.1f}" font-size="11" '
                           f'text-anchor="middle" fill="#223">{meeting.people}</text>')
        if slots <= 16 or n % 2 == 1:
            out.append(f'<text x="{x + slot / 2:.1f}" y="{height - 7}" font-size="11" '
                       f'text-anchor="middle" fill="#445">{n}</text>')
    passed = {m.after for m in summary.meetings if m.bus_stop and m.after is not None}
    for after in sorted(a for a in passed | set(planned_stops) if 0 < a <= slots):
        x = left + after * slot
        held = after in passed
        colour = BUS_STOP_HELD if held else BUS_STOP_PLANNED
        dash = "" if held else ' stroke-dasharray="4 3"'
        label = _("Bus stop after session %(n)s", n=after)
        out.append(
            f'<g class="bus-stop{" passed" if held else ""}"><title>{escape(label)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{head - 4}" y2="{head + plot_h}" stroke="{colour}" '
            f'stroke-width="3"{dash} />'
            f'<path d="M{x - 6:.1f},{head - 12} h12 l-6,8 z" fill="{colour}" /></g>')
    out.append("</svg>")
    return Markup("".join(out))


def _planned_stops(course_id: str, version: int | None) -> tuple[str | None, tuple[int, ...]]:
    """The course's title and where its plan puts bus stops, when the box still has the course
    (device.course) in the version the records were made with; else the records alone say."""
    from device.course import CourseError, resolve_course

    try:
        course = resolve_course(course_id, state().data_dir).course
    except (CourseError, OSError):
        return None, ()
    if course.version != version:
        return course.display_title, ()
    return course.display_title, tuple(m.after for m in course.plan() if m.bus_stop and m.after is not None)


def course_views(rows: list[dict]) -> list[dict]:
    """What the "Courses" section shows for each course: numbers, two charts and the table."""
    from device.usage import course_summaries

    views = []
    for n, summary in enumerate(course_summaries(rows)):
        title, stops = _planned_stops(summary.course, summary.course_version)
        table_id = f"course-table-{n}"
        sessions = summary.sessions
        views.append({
            "id": summary.course,
            "title": title or summary.course,
            "summary": summary,
            "table_id": table_id,
            "chart": course_chart(summary, stops, table_id),
            "core_chart": bar_chart(
                _("Core steps delivered in each session of %(course)s", course=summary.course),
                [str(m.number) for m in sessions],
                [(_("planned"), [float(m.core_planned) for m in sessions], "#b9c4d0"),
                 (_("delivered"), [float(m.core_delivered) for m in sessions], "#2d6a8e")],
            ) if sessions else None,
            "meetings": [{"label": meeting_label(m, summary.sessions_total), "meeting": m}
                         for m in summary.meetings],
            "not_held": ", ".join(str(n) for n in summary.sessions_not_held),
        })
    return views


# -- the training log ---------------------------------------------------------------------------


def _rehearsals() -> list[dict]:
    """Rehearsals from the training log (device.training_log), newest first."""
    from device.datafolder import DataFolder

    path = DataFolder(state().data_dir).training_log
    if not path.exists():
        return []  # no rehearsal yet
    from device.training_log import TrainingLog

    log = TrainingLog(path)
    try:
        return list(log.rehearsals())
    finally:
        log.close()


@bp.route("/")
def usage():
    since, problem = _since()
    include = _include_tests()
    every = _rows(since, include_tests=True)  # the table lists test runs too, marked
    counted = [r for r in every if include or not r["test_reason"]]
    from device.usage import hearing_of

    for row in every:
        row["hearing"] = hearing_of(row)
    dhis2 = dict(state().config.dhis2)
    totals = {
        "sessions": len(counted),
        "completed": sum(1 for r in counted if r.get("completed")),
        "attendance": sum(people(r) for r in counted),
        "help": sum(int(r.get("help_count") or 0) for r in counted),
        "tests": sum(1 for r in every if r["test_reason"]),
    }
    heard = [r["hearing"] for r in counted if r["hearing"].listened]
    not_clear = [h for h in heard if h.left_to_facilitator]
    return render_template(
        "usage.html",
        rows=every[:100],
        total_rows=len(every),
        totals=totals,
        charts=charts(counted) if counted else [],
        since=since or "",
        since_error=problem,
        include_tests=include,
        min_minutes=_min_minutes(),
        dhis2_ready=bool(dhis2.get("org_unit") and dhis2.get("data_elements")),
        test_words=test_words,
        courses=course_views(counted),
        rehearsals=_rehearsals()[:50],
        hearing_note=not_clear and {
            "circles": len(not_clear),
            "left": sum(h.left_to_facilitator for h in not_clear),
            "turns": sum(h.listened for h in not_clear)},
    ), (400 if problem else 200)


def _back_to_table():
    from flask import redirect, url_for

    return redirect(url_for("usage.usage", since=request.form.get("since") or None,
                            tests=request.form.get("tests") or None) + "#sessions")


def _describe(row: dict) -> str:
    minutes = round(float(row.get("duration_s") or 0) / 60)
    return _("the circle “%(name)s” of %(when)s (%(minutes)s min)", name=row.get("script"),
             when=_when(row.get("started_at")), minutes=minutes)


def _when(started_at: object) -> str:
    """"2026-03-05 at 14:30" in English (as always); the reader's own date format otherwise."""
    if current_language() == "en":
        return str(started_at or "")[:16].replace("T", " at ")
    return local_datetime(started_at)


def test_words(reason: str | None) -> str:
    """device.usage.why_a_test_run's reason in the reader's words."""
    match = re.match(r"^shorter than (\S+) minutes$", reason or "")
    if match:
        minutes = float(match[1])
        return _("shorter than %(minutes)s minutes", minutes=local_number(minutes, 0 if minutes.is_integer() else 1))
    return translated(reason or "")


@bp.route("/<session_id>/delete", methods=["POST"])
def delete(session_id: str):
    """Delete one record, after a confirmation page (the same with or without JavaScript)."""
    from flask import flash, url_for

    row = next((r for r in backends.usage_sessions(state().data_dir) if r["id"] == session_id),
               None)
    if row is None:
        flash(_("That circle is not in the records (perhaps it was deleted already)."), "error")
        return _back_to_table()
    if request.form.get("confirm") != "yes":
        return render_template(
            "confirm.html",
            title=_("Delete this record?"),
            text=_("Delete the record of %(what)s?", what=_describe(row)),
            note=_("It is removed from the usage table and from every later export. "
                   "This cannot be undone."),
            action_url=url_for("usage.delete", session_id=session_id),
            fields={"since": request.form.get("since", ""), "tests": request.form.get("tests", "")},
            yes_label=_("Yes, delete it"),
            back_url=url_for("usage.usage", since=request.form.get("since") or None,
                             tests=request.form.get("tests") or None) + "#sessions",
        )
    try:
        backends.delete_session(state().data_dir, session_id)
    except KeyError:
        flash(_("That circle is not in the records (perhaps it was deleted already)."), "error")
        return _back_to_table()
    flash(_("Deleted the record of %(what)s.", what=_describe(row)), "ok")
    return _back_to_table()


@bp.route("/<session_id>/attendance", methods=["POST"])
def attendance(session_id: str):
    """The facilitator's head count for one circle (the box only estimates it from turns)."""
    from flask import flash

    from device.usage import UsageStore

    raw = request.form.get("attendance", "").strip()
    back = _back_to_table()
    if not raw.isdigit() or not 0 <= int(raw) <= 500:
        flash(_("People attending: enter a whole number from 0 to 500, not '%(value)s'. "
                "Nothing was changed.", value=raw[:20]), "error")
        return back
    path = backends.usage_path(state().data_dir)
    if not path.exists():
        flash(_("There are no circles recorded on this box yet."), "error")
        return back
    store = UsageStore(path)
    try:
        store.set_attendance(session_id, int(raw))
    except KeyError:
        flash(_("That circle is not in the records."), "error")
        return back
    finally:
        store.close()
    flash(ngettext("Saved: %(num)d person attended.", "Saved: %(num)d people attended.", int(raw)), "ok")
    return back


def _download(body: str, mimetype: str, name: str) -> Response:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    box = re.sub(r"[^a-z0-9-]", "-", state().config.box.name.lower())
    return Response(
        body,
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="circlebox-{box}-{name}-{stamp}.'
            f'{"csv" if "csv" in mimetype else "json"}"'
        },
    )


@bp.route("/export.csv")
def export_csv():
    since, problem = _since()
    if problem:
        return Response(problem, status=400, mimetype="text/plain")
    rows = _rows(since, _include_tests())
    return _download(backends.export_csv(rows), "text/csv; charset=utf-8", "sessions")


def _dhis2_settings() -> tuple[dict, str | None]:
    from device.usage import Dhis2ConfigError, dhis2_settings

    settings = dict(state().config.dhis2 or {})
    if not settings.get("org_unit") or not settings.get("data_elements"):
        return settings, (
            "DHIS2 codes are not set yet: enter the org unit and data element ids "
            "on the Settings page first"
        )
    try:
        dhis2_settings(settings)
    except Dhis2ConfigError as exc:
        return settings, f"the DHIS2 codes need fixing on the Settings page: {exc}"
    return settings, None


@bp.route("/dhis2.json")
def dhis2_json():
    since, problem = _since()
    settings, missing = _dhis2_settings()
    if problem or missing:
        return Response(
            json.dumps({"error": problem or missing}), status=400, mimetype="application/json"
        )
    body = backends.dhis2_data_value_set(_rows(since, _include_tests()), settings)
    return _download(json.dumps(body, indent=1), "application/json", "dhis2")


@bp.route("/dhis2.csv")
def dhis2_csv():
    since, problem = _since()
    settings, missing = _dhis2_settings()
    if problem or missing:
        return Response(problem or missing, status=400, mimetype="text/plain")
    rows = _rows(since, _include_tests())
    return _download(backends.dhis2_csv(rows, settings), "text/csv; charset=utf-8", "dhis2")


@bp.route("/courses.csv")
def export_courses_csv():
    """One line per course: sessions held against planned, bus stops, core steps, attendance."""
    from device.usage import course_summaries, export_course_csv

    since, problem = _since()
    if problem:
        return Response(problem, status=400, mimetype="text/plain")
    rows = _rows(since, _include_tests())
    return _download(export_course_csv(course_summaries(rows)), "text/csv; charset=utf-8", "courses")


@bp.route("/training.csv")
def export_training_csv():
    """The training log for the trainer: which circles and steps were practised, and when."""
    from device.training_log import export_training_csv as training_csv

    return _download(training_csv(_rehearsals()), "text/csv; charset=utf-8", "training")
