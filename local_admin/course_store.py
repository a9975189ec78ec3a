"""Courses on the admin page: the list with where each stands, the editor's form <-> YAML, saving.

What a course is and its rules are `device.course` (parse, plan, which circles it names); where
courses live is `device.datafolder.DataFolder`; where a course stands is written only by the
runtime (`device.course_position`) and read here, or asked of the running box. This module
only turns form text into a course's YAML and puts each problem next to its field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from flask_babel import gettext as _

from device.datafolder import DataFolder
from device.fsutil import atomic_write_text
from device.problems import N_, Problem
from device.script import STEP_ID

MAX_SESSIONS_ROWS = 100  # rows of the sessions list a form may send (a course is far shorter)


def valid_id(course_id: str) -> bool:
    return bool(STEP_ID.match(course_id or ""))


# -- where a course stands ------------------------------------------------------------------------


def meeting_words(number: int | None, total: int, after: int | None = None) -> str:
    """A meeting of the plan in the reader's words: "Session 3 of 16", "Bus stop after session 8"."""
    if number is None:
        return _("Bus stop after session %(after)s", after=after if after is not None else "?")
    return _("Session %(n)s of %(total)s", n=number, total=total)


@dataclass(frozen=True)
class PlanEntry:
    """One meeting of a course's plan as the pages show it."""

    index: int
    circle: str
    number: int | None  # None for a bus stop
    after: int | None
    held: bool
    label: str

    @property
    def bus_stop(self) -> bool:
        return self.number is None


def plan_from_status(block: Mapping[str, Any]) -> list[PlanEntry]:
    """The runtime's status "course" block's plan, numbered again here so its labels are in the
    reader's language (the runtime's are English): sessions count up, a bus stop follows one."""
    raw = block.get("plan") if isinstance(block.get("plan"), list) else []
    total = sum(1 for m in raw if isinstance(m, dict) and not m.get("bus_stop"))
    out: list[PlanEntry] = []
    number = 0
    for position, meeting in enumerate(raw):
        if not isinstance(meeting, dict):
            continue
        index = meeting.get("index") if isinstance(meeting.get("index"), int) else position
        if meeting.get("bus_stop"):
            entry = PlanEntry(index, str(meeting.get("circle", "")), None, number, bool(meeting.get("held")),
                              meeting_words(None, total, number))
        else:
            number += 1
            entry = PlanEntry(index, str(meeting.get("circle", "")), number, None, bool(meeting.get("held")),
                              meeting_words(number, total))
        out.append(entry)
    return out


def plan_from_course(course: Any, held: Sequence[int] = ()) -> list[PlanEntry]:
    """`device.course.Course.plan()` as the pages show it; `held`: plan indexes held already."""
    total = course.sessions_total
    return [PlanEntry(m.index, m.circle, m.number, m.after, m.index in held,
                      meeting_words(m.number, total, m.after)) for m in course.plan()]


def standing_words(plan: Sequence[PlanEntry], position: int | None, finished: bool = False) -> str:
    """Where a course stands, for the list: "Next: session 3 of 16" or that it is finished."""
    total = sum(1 for m in plan if not m.bus_stop)
    if finished or (position is not None and position >= len(plan)):
        return _("Finished: all %(total)s sessions held", total=total)
    entry = next((m for m in plan if m.index == (position or 0)), None)
    if entry is None:
        return _("Not known")
    return _("Next: %(meeting)s", meeting=entry.label[:1].lower() + entry.label[1:]) if position \
        else _("Not started: %(meeting)s comes first", meeting=entry.label[:1].lower() + entry.label[1:])


def stored_position(data: DataFolder, course: Any) -> tuple[int, set[int]]:
    """(position, plan indexes held) from the position file the runtime writes (read only:
    device.course_position says what a missing or damaged file means)."""
    from device.course_position import read_position

    reading = read_position(data, course)
    return reading.position.position, reading.position.held_indexes()


def _announcement_meta(course: Any, data: DataFolder) -> dict[str, Any] | None:
    """The meta of the course's announcement set made for this text (device.course_play finds
    the sets and names their key), else None."""
    from device.course_play import announcement_fingerprint, announcement_manifests

    want = announcement_fingerprint(course)
    for _cache, manifest in announcement_manifests(course, data):
        meta = manifest.get("meta")
        if isinstance(meta, dict) and meta.get("prompts_sha256") == want:
            return meta
    return None


def announcements_ready(course: Any, data: DataFolder) -> bool:
    """Is there nothing more to make for the course's announcements ("This is session 3 of
    16.")? Rendered, or found not to be sayable on this box (no voice of its language)."""
    return _announcement_meta(course, data) is not None


def unannounced_why(course: Any, data: DataFolder) -> str | None:
    """Why the box cannot say the course's announcements (no voice of its language), or None."""
    meta = _announcement_meta(course, data)
    if not meta or not meta.get("no_voice"):
        return None
    spoken = meta.get("no_voice_spoken")
    if isinstance(spoken, list) and all(isinstance(v, list) and len(v) == 2 for v in spoken):
        from device.course_play import no_voice_problem

        problem = no_voice_problem(course.course, course.language, [tuple(v) for v in spoken])
        if str(problem) == str(meta["no_voice"]):  # the same words: say them in the reader's language
            return problem
    return str(meta["no_voice"])


# -- the list -------------------------------------------------------------------------------------


@dataclass
class CourseInfo:
    """One course on the Courses page."""

    id: str
    title: str
    version: int | None
    origin: str  # device.content.Origin's value: "box copy", "installed", "packaged"
    sessions_total: int = 0
    bus_stops: int = 0
    error: str | None = None
    standing: str = ""
    in_use: bool = False
    announced: bool = False  # its announcements are rendered
    unannounced_why: str | None = None  # why the box cannot say them (no voice of its language)
    problems: list[str] = field(default_factory=list)  # circles it names that the box cannot find

    @property
    def editable(self) -> bool:
        """Only the box's own copies are edited in place; others are copied to be edited."""
        return self.origin == "box copy"


def list_course_infos(data_dir: Path, in_use: str | None, status_block: Mapping[str, Any] | None) -> list[CourseInfo]:
    """Every course on the box (its own, installed, packaged), with where each stands: from the
    running box for the course it plays, else from the position file."""
    from device.course import CourseError, check_course_circles, joined, list_courses, resolve_course

    data = DataFolder(data_dir)
    infos: list[CourseInfo] = []
    for course_id in list_courses(data):
        try:
            source = resolve_course(course_id, data)
        except CourseError as exc:
            origin = "box copy" if data.course(course_id).exists() else "packaged"
            infos.append(CourseInfo(course_id, course_id, None, origin, error=joined(exc.problems[:3])))
            continue
        course = source.course
        info = CourseInfo(course.course, course.display_title, course.version, str(source.origin.value),
                          course.sessions_total, sum(1 for m in course.plan() if m.bus_stop),
                          in_use=course.course == in_use, announced=announcements_ready(course, data),
                          unannounced_why=unannounced_why(course, data))
        info.problems = check_course_circles(course, data)
        if status_block and status_block.get("id") == course.course:
            plan = plan_from_status(status_block)
            info.standing = standing_words(plan, status_block.get("position"), bool(status_block.get("finished")))
        else:
            position, held = stored_position(data, course)
            info.standing = standing_words(plan_from_course(course, held), position)
        infos.append(info)
    return sorted(infos, key=lambda c: c.title.lower())


# -- form <-> YAML --------------------------------------------------------------------------------


def new_session(circle: str = "") -> dict[str, Any]:
    return {"circle": circle, "repeat": "1", "bus_stop_after": False}


def empty_form(first_circle: str = "") -> dict[str, Any]:
    return {"course": "", "title": "", "language": "en", "bus_stop_circle": "bus-stop",
            "sessions": [new_session(first_circle)]}


def course_to_form(data: Mapping[str, Any]) -> dict[str, Any]:
    """A course's YAML (as a dict) as the editor's form (strings, for redisplay)."""
    sessions = data.get("sessions") if isinstance(data.get("sessions"), list) else []
    rows = []
    for item in sessions:
        item = item if isinstance(item, dict) else {}
        repeat = item.get("repeat", 1)
        rows.append({"circle": str(item.get("circle") or ""), "repeat": str(repeat),
                     "bus_stop_after": item.get("bus_stop_after") is True})
    return {
        "course": str(data.get("course") or ""),
        "title": str(data.get("title") or ""),
        "language": str(data.get("language") or "en"),
        "bus_stop_circle": str(data.get("bus_stop_circle") or ""),
        "sessions": rows,
    }


def form_from_request(values: Any) -> dict[str, Any]:
    """The editor's form as posted (a MultiDict), kept as strings for redisplay."""
    try:
        count = max(0, min(MAX_SESSIONS_ROWS, int(values.get("nsessions", "0"))))
    except ValueError:
        count = 0
    rows = [{"circle": str(values.get(f"c{i}_circle", "")).strip()[:80],
             "repeat": str(values.get(f"c{i}_repeat", "1")).strip()[:10],
             "bus_stop_after": values.get(f"c{i}_bus_stop") == "on"} for i in range(count)]
    return {
        "course": str(values.get("course", "")).strip()[:80],
        "title": str(values.get("title", "")).strip()[:200],
        "language": str(values.get("language", "")).strip()[:20],
        "bus_stop_circle": str(values.get("bus_stop_circle", "")).strip()[:80],
        "sessions": rows,
        "copy_of": str(values.get("copy_of", "")).strip()[:80],  # a copy keeps its messages
    }


def form_to_course(form: Mapping[str, Any], base: Mapping[str, Any] | None, version: int,
                   errors: dict[str, str]) -> dict[str, Any]:
    """The course's YAML dict from the form; a repeat count that is not a whole number goes into
    `errors` at its field. What the form does not show (the spoken messages) is kept from
    `base`, the saved course."""
    data: dict[str, Any] = {"course": form["course"]}
    if form["title"]:
        data["title"] = form["title"]
    data["version"] = version
    data["language"] = form["language"] or "en"
    if form["bus_stop_circle"]:
        data["bus_stop_circle"] = form["bus_stop_circle"]
    if base and isinstance(base.get("messages"), dict) and base["messages"]:
        data["messages"] = dict(base["messages"])
    sessions = []
    for i, row in enumerate(form["sessions"]):
        item: dict[str, Any] = {"circle": row["circle"]}
        text = row["repeat"] or "1"
        if not text.isdigit():
            errors[f"c{i}_repeat"] = _("write how many sessions in a row use this circle, as a whole number "
                                       "like 1 or 8")
        elif int(text) != 1:
            item["repeat"] = int(text)  # its limits are device.course's
        if row["bus_stop_after"]:
            item["bus_stop_after"] = True
        sessions.append(item)
    data["sessions"] = sessions
    return data


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=100)


def raw_dict(text: str) -> dict[str, Any]:
    """A course file as a plain dict for the form ({} when it cannot be read)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


_ENTRY = re.compile(r"^sessions entry (\d+) \([^)]*\), field ([\w.()\s]+?)(?: \(line \d+\))?: (.*)$", re.DOTALL)
_TOP = re.compile(r"^field ([\w.]+)(?: \(line \d+\))?: (.*)$", re.DOTALL)
_CIRCLE = re.compile(r"^(.*?) uses? the circle '([^']+)'")
_ROW_FIELD = {"circle": "circle", "repeat": "repeat", "bus_stop_after": "bus_stop"}
_TOP_FIELDS = ("course", "title", "language", "bus_stop_circle")


def problems_to_fields(problems: Sequence[str], form: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """device.course's problems put next to the form's fields where they name one (a row's
    circle, repeat count or bus stop; the bus-stop circle; the course's name); the rest stay
    general. Its words name the field, the sessions and the YAML line (device.course)."""
    fields: dict[str, str] = {}
    general: list[str] = []
    rows = form.get("sessions", [])
    for problem in problems:
        text = str(problem)
        key, words = _field_of(text, rows, form.get("bus_stop_circle", ""))
        if key:
            fields.setdefault(key, _words_of(problem, words))
        else:
            general.append(_without_line(problem, re.sub(r" \(line \d+\)", "", text)))
    return fields, general


def _words_of(problem: Any, english: str) -> Any:
    """What to show at the field: the problem's own words (a device.problems.Problem's
    `problem` field, so the page can say it in the reader's language), else the English."""
    inner = getattr(problem, "fields", {}).get("problem")
    return inner if inner is not None and str(inner) == english else (
        problem if str(problem) == english else english)


def _without_line(problem: Any, english: str) -> Any:
    """A problem without its YAML line (the form has no lines), still translatable."""
    fields = getattr(problem, "fields", {})
    if "where" in fields and "problem" in fields:
        return Problem(N_("%(where)s: %(problem)s"), where=fields["where"], problem=fields["problem"])
    return problem if str(problem) == english else english


def _field_of(text: str, rows: Sequence[Mapping[str, Any]], bus_stop_circle: str) -> tuple[str | None, str]:
    """(the form's field a problem is about, or None; the words to show next to it)."""
    entry = _ENTRY.match(text)
    if entry and 0 < int(entry[1]) <= len(rows):
        part = _ROW_FIELD.get(entry[2].split(".")[0], "circle")
        return f"c{int(entry[1]) - 1}_{part}", entry[3]
    top = _TOP.match(text)
    if top and top[1] in _TOP_FIELDS:
        return top[1], top[2]
    if top and top[1] == "sessions":
        return "sessions", top[2]
    circle = _CIRCLE.match(text)
    if circle:
        name, users = circle[2], circle[1].lower()
        if name == bus_stop_circle and users.startswith("the bus stop"):
            return "bus_stop_circle", text
        for index, row in enumerate(rows):
            if row.get("circle") == name:
                return f"c{index}_circle", text
    return None, text


# -- files ----------------------------------------------------------------------------------------


def own_path(data_dir: Path, course_id: str) -> Path:
    return DataFolder(data_dir).course(course_id)


def save(data_dir: Path, course_id: str, text: str) -> Path:
    """Write the box's own copy atomically (device.fsutil): a power cut leaves the old or new file."""
    path = own_path(data_dir, course_id)
    atomic_write_text(path, text)
    return path
