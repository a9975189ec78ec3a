"""Courses: a programme's ordered sessions (each one circle) with bus stops between them.

A therapists' support group meets for eight sessions, stops at a "bus stop" where some members
leave and others join, then meets for eight more. A course is that list, written in YAML by a
therapist (or on the admin page), validated like a circle: every problem names the field, the
session number and the YAML line. Where a course stands (which meeting comes next) is kept by
`device.course_position`; which circle the box plays is `device.course_play`.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from device.datafolder import SCRIPT_SUFFIXES, DataFolder, data_folder
from device.problems import N_, Problem
from device.script import MAX_PROBLEMS, STEP_ID, ScriptError, _line_of, compose_circle_yaml, read_text_file

# A course is a short list: a few KB. Bounded before parsing, like a circle (device.script).
MAX_COURSE_CHARS = 64 * 1024
MAX_SESSIONS = 200  # sessions in one course, counted after `repeat`
MAX_REPEAT = 100
PLACEHOLDERS = {"session": ("n", "total"), "bus_stop": ("after",)}
DEFAULT_COURSE_MESSAGES = {
    "session": "This is session {n} of {total}.",
    "bus_stop": "This is the bus stop after session {after}. Today some of us leave the group, and some join it.",
}
DEFAULT_BUS_STOP_CIRCLE = "bus-stop"  # packaged: device/scripts/bus-stop.yaml


class CourseError(ValueError):
    """A course that cannot be used; `problems` lists each one with its place (like ScriptError)."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "\n  ".join(self.problems))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _circle_id(value: str) -> str:
    if not STEP_ID.match(value):
        raise ValueError(Problem(N_("'%(value)s' is not a circle id: use lower-case letters, digits, - and _ "
                                    "(up to 40), starting with a letter or digit"), value=value))
    return value


class CourseSessions(_Frozen):
    """One entry of `sessions:`: a circle, held `repeat` times in a row, maybe a bus stop after."""

    circle: str
    repeat: int = Field(default=1, ge=1, le=MAX_REPEAT)
    bus_stop_after: bool = False

    _circle = field_validator("circle")(lambda cls, v: _circle_id(v))


def _message_template(name: str, value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError(Problem(N_("is empty")))
    if len(value) > 1000:
        raise ValueError(Problem(N_("is %(count)s characters; keep it under 1000"), count=len(value)))
    allowed = PLACEHOLDERS[name]
    try:
        used = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
    except ValueError as exc:
        raise ValueError(Problem(N_("has a { or } that is not a placeholder (%(detail)s)"), detail=str(exc))) from exc
    unknown = sorted(used - set(allowed))
    if unknown:
        names = ", ".join("{" + u + "}" for u in unknown)
        raise ValueError(Problem(N_("%(names)s cannot be filled in here; use %(allowed)s"), names=names,
                                 allowed=", ".join("{" + a + "}" for a in allowed)))
    return value


class CourseMessages(_Frozen):
    """What the box says before a meeting of the course; {n} {total} {after} are filled in."""

    session: str = DEFAULT_COURSE_MESSAGES["session"]
    bus_stop: str = DEFAULT_COURSE_MESSAGES["bus_stop"]

    @field_validator("session", "bus_stop")
    @classmethod
    def _template(cls, value: str, info: Any) -> str:
        return _message_template(info.field_name, value)


@dataclass(frozen=True)
class Meeting:
    """One meeting in a course's plan: a numbered session, or a bus stop after a session."""

    index: int  # position in the plan, 0-based
    circle: str
    number: int | None  # 1-based session number; None for a bus stop
    bus_stop: bool = False
    after: int | None = None  # for a bus stop: the session it follows
    sessions_total: int = 0  # sessions in the course (bus stops not counted)

    @property
    def label(self) -> str:
        """"Session 3 of 16" or "Bus stop after session 8" (for people: panel, admin, status)."""
        if self.bus_stop:
            return f"Bus stop after session {self.after}"
        return f"Session {self.number} of {self.sessions_total}" if self.sessions_total else f"Session {self.number}"


class Course(_Frozen):
    course: str
    title: str | None = Field(default=None, max_length=120)
    version: int = Field(ge=1)
    language: str = Field(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")
    bus_stop_circle: str = DEFAULT_BUS_STOP_CIRCLE
    messages: CourseMessages = CourseMessages()
    sessions: tuple[CourseSessions, ...] = Field(min_length=1, max_length=MAX_SESSIONS)

    @field_validator("course")
    @classmethod
    def _course_id(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError(Problem(N_("use lower-case letters, digits, - and _ (up to 40), starting with a letter "
                                        "or digit")))
        return value

    _bus_circle = field_validator("bus_stop_circle")(lambda cls, v: _circle_id(v))

    @property
    def sessions_total(self) -> int:
        """Numbered sessions (bus stops are meetings of their own, not counted)."""
        return sum(entry.repeat for entry in self.sessions)

    @property
    def display_title(self) -> str:
        return self.title or self.course

    def plan(self) -> tuple[Meeting, ...]:
        """The course expanded into meetings in order: session 1..8, bus stop, session 9..16."""
        total = self.sessions_total
        meetings: list[Meeting] = []
        number = 0
        for entry in self.sessions:
            for _ in range(entry.repeat):
                number += 1
                meetings.append(Meeting(len(meetings), entry.circle, number, sessions_total=total))
            if entry.bus_stop_after:
                meetings.append(Meeting(len(meetings), self.bus_stop_circle, None, bus_stop=True, after=number,
                                        sessions_total=total))
        return tuple(meetings)

    def circles(self) -> set[str]:
        """Every circle the course plays (the bus-stop circle only when a bus stop is marked)."""
        return {meeting.circle for meeting in self.plan()}

    def announcement(self, meeting: Meeting) -> str:
        """What the box says before `meeting` ("This is session 3 of 16.")."""
        if meeting.bus_stop:
            return self.messages.bus_stop.format(after=meeting.after)
        return self.messages.session.format(n=meeting.number, total=meeting.sessions_total)


# -- problems in a therapist's words ------------------------------------------------------------


def _entry_sessions(raw: Any, entry: int) -> Problem | str:
    """"session 9" or "sessions 9 to 16": the numbers an entry of `sessions:` stands for."""
    entries = raw.get("sessions") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        return ""
    first = 1
    for item in entries[:entry]:
        first += _repeat_of(item)
    count = _repeat_of(entries[entry]) if entry < len(entries) else 1
    if count == 1:
        return Problem(N_("session %(n)s"), n=first)
    return Problem(N_("sessions %(first)s to %(last)s"), first=first, last=first + count - 1)


def _repeat_of(item: Any) -> int:
    repeat = item.get("repeat", 1) if isinstance(item, dict) else 1
    return repeat if isinstance(repeat, int) and not isinstance(repeat, bool) and 1 <= repeat <= MAX_REPEAT else 1


_PLAIN = {  # pydantic's wording for numbers and switches, in plain words ("%(ge)s": its context)
    "greater_than_equal": N_("must be at least %(ge)s"),
    "less_than_equal": N_("must be at most %(le)s"),
    "int_parsing": N_("must be a whole number"),
    "int_from_float": N_("must be a whole number"),
    "bool_parsing": N_("must be true or false"),
    "string_type": N_("must be text"),
    "too_short": N_("needs at least one entry"),
    "too_long": N_("has too many entries (at most %(max_length)s)"),
    "string_too_long": N_("is too long (at most %(max_length)s characters)"),
}


def _describe(err: dict[str, Any], raw: Any, root: yaml.Node | None) -> Problem:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    raised = (err.get("ctx") or {}).get("error")
    msg: str = err["msg"].removeprefix("Value error, ")
    if isinstance(raised, ValueError) and raised.args and isinstance(raised.args[0], Problem):
        msg = raised.args[0]  # our own validators' words, translatable
    line = _line_of(root, loc)
    if len(loc) >= 2 and loc[0] == "sessions" and isinstance(loc[1], int):
        field = ".".join(str(p) for p in loc[2:]) or Problem(N_("(the entry)"))
        where = Problem(N_("sessions entry %(entry)s (%(sessions)s), field %(field)s"), entry=loc[1] + 1,
                        sessions=_entry_sessions(raw, loc[1]), field=field)
    else:
        where = Problem(N_("field %(field)s"), field=".".join(str(p) for p in loc) or Problem(N_("(top level)")))
    if err["type"] == "missing":
        msg = Problem(N_("is missing"))
    elif err["type"] == "extra_forbidden":
        msg = Problem(N_("is not a known field (check the spelling)"))
    elif err["type"] == "model_type" and loc and loc[0] == "sessions":
        msg = Problem(N_("must be a mapping like {circle: three-step-circle, repeat: 8}"))
    elif err["type"] in _PLAIN:
        msg = Problem(_PLAIN[err["type"]], **(err.get("ctx") or {}))
    elif loc == ["language"]:
        msg = Problem(N_("must be a language code like en or en_US"))
    return at_line(where, line, msg)


def at_line(where: str, line: int | None, problem: str) -> Problem:
    """"<where> (line 4): <problem>": the shape of every course problem (the admin page finds the
    field in `where` and shows `problem` next to it)."""
    if line:
        return Problem(N_("%(where)s (line %(line)s): %(problem)s"), where=where, line=line, problem=problem)
    return Problem(N_("%(where)s: %(problem)s"), where=where, problem=problem)


def _problems(exc: ValidationError, raw: Any, root: yaml.Node | None) -> list[str]:
    errors = exc.errors()
    if any(len(e["loc"]) >= 2 and e["loc"][0] == "sessions" for e in errors):
        # "needs at least one entry" only echoes that every entry failed: their errors say why
        errors = [e for e in errors if not (tuple(e["loc"]) == ("sessions",) and e["type"] == "too_short")]
    problems: list[str] = []
    for err in errors:
        text = _describe(err, raw, root)
        if text not in problems:
            problems.append(text)
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        template = N_("and %(count)s more problems (fix these first)") if more > 1 else \
            N_("and %(count)s more problem (fix these first)")
        problems = [*problems[:MAX_PROBLEMS], Problem(template, count=f"{more:,}")]
    return problems


def _plan_problems(course: Course, raw: dict[str, Any], root: yaml.Node | None) -> list[str]:
    """What the fields allow one by one but the course as a whole does not."""
    problems = []
    total = course.sessions_total
    if total > MAX_SESSIONS:
        line = _line_of(root, ["sessions"])
        problems.append(at_line(Problem(N_("field %(field)s"), field="sessions"), line, Problem(
            N_("the course has %(total)s sessions; a course may have at most %(most)s"), total=total,
            most=MAX_SESSIONS)))
    last = len(course.sessions) - 1
    if course.sessions[last].bus_stop_after:
        line = _line_of(root, ["sessions", last, "bus_stop_after"])
        where = Problem(N_("sessions entry %(entry)s (%(sessions)s), field %(field)s"), entry=last + 1,
                        sessions=_entry_sessions(raw, last), field="bus_stop_after")
        problems.append(at_line(where, line, Problem(N_(
            "a bus stop after the last session has nobody to welcome; remove it, or add sessions after it"))))
    return problems


# -- loading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedCourse:
    """A validated course and where it came from."""

    course: Course
    path: Path | None
    text: str


# The circle parser's bounds (device.script.compose_circle_yaml), said of a course: the circle's
# words with "course" for "circle", listed here so `pybabel extract` finds them.
_COURSE_BOUNDS = (
    N_("is %(length)s characters; a course file may be at most %(limit)s (split a long course into two)"),
    N_("has more than %(limit)s entries (keys, values and list items); "
       "a course has far fewer: check that the file is a course"),
)


def _said_of_a_course(problem: Problem) -> Problem:
    """A bound the circle parser found, in a course's words, still translatable on the page."""
    template = getattr(problem, "template", str(problem)).replace("circle", "course")
    return Problem(template, **getattr(problem, "fields", {}))


def parse_course(text: str, source: str, path: Path | None = None) -> LoadedCourse:
    """Parse and validate course text; raises CourseError naming the field, session and line."""
    if len(text) > MAX_COURSE_CHARS:
        raise CourseError(source, [Problem(
            N_("is %(count)s characters; a course file may be at most %(most)s (a course is a short list of sessions)"),
            count=f"{len(text):,}", most=f"{MAX_COURSE_CHARS:,}")])
    try:
        root, raw = compose_circle_yaml(text, source)
    except ScriptError as exc:  # the circle's bounds, said of a course
        raise CourseError(source, [_said_of_a_course(p) for p in exc.problems]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", exc)
        if problem == "exceeded maximum nesting depth":
            problem = Problem(N_("nested too deeply"))
        raise CourseError(source, [Problem(N_("not valid YAML%(at)s: %(problem)s"), at=at, problem=problem)]) from exc
    except RecursionError as exc:
        raise CourseError(source, [Problem(N_("not valid YAML: nested too deeply"))]) from exc
    if not isinstance(raw, dict):
        raise CourseError(source, [Problem(N_("must be a mapping with course, version, language and sessions"))])
    try:
        course = Course.model_validate(raw)
    except RecursionError as exc:
        raise CourseError(source, [Problem(N_("field (top level): nested too deeply (or refers to itself)"))]) from exc
    except ValidationError as exc:
        raise CourseError(source, _problems(exc, raw, root)) from exc
    problems = _plan_problems(course, raw, root)
    if problems:
        raise CourseError(source, problems)
    return LoadedCourse(course=course, path=path, text=text)


def load_course(path: Path) -> LoadedCourse:
    return parse_course(read_text_file(path, CourseError), str(path), path)


def packaged_courses_dir() -> Path:
    return Path(str(resources.files("device").joinpath("courses")))


# -- where courses live, and which copy the box uses ----------------------------------------------


@dataclass(frozen=True)
class CourseSource:
    """A course as the box would use it: the course, and where it came from."""

    name: str  # what was asked for (session.course, a command-line argument)
    loaded: LoadedCourse
    origin: Any  # device.content.Origin (BOX, INSTALLED, PACKAGED or FILE)
    release_version: int | None = None  # the content bundle's version, when INSTALLED

    @property
    def course(self) -> Course:
        return self.loaded.course

    @property
    def course_id(self) -> str:
        return self.loaded.course.course

    @property
    def version(self) -> int:
        return self.loaded.course.version

    @property
    def editable(self) -> bool:
        """An installed course is never changed in place: the admin page copies it to edit."""
        from device.content import Origin

        return self.origin is not Origin.INSTALLED

    def where(self) -> str:
        from device.content import Origin

        if self.origin is Origin.INSTALLED:
            bundle = f"version {self.release_version}" if self.release_version else "installed"
            return f"installed by a content bundle ({bundle}), {self.loaded.path}"
        return f"{self.origin.value}, {self.loaded.path}"

    def describe(self) -> str:
        return f"course '{self.course_id}' version {self.version} ({self.where()})"


def course_candidates(name: str, data: Path | DataFolder | None) -> list[tuple[Path, Any]]:
    """Every copy of course `name`, in the order of preference on equal versions: a file path as
    given, else the box's copy, the installed one, the packaged one (as `script_candidates`)."""
    from device.content import Origin

    if Path(name).suffix in SCRIPT_SUFFIXES and Path(name).exists():
        return [(Path(name), Origin.FILE)]
    if not STEP_ID.match(name):
        return []
    dirs: tuple[tuple[Path, Origin], ...] = ((packaged_courses_dir(), Origin.PACKAGED),)
    if data is not None:
        folder = data_folder(data)
        dirs = ((folder.courses, Origin.BOX), (folder.installed_courses, Origin.INSTALLED), *dirs)
    return [(d / f"{name}{suffix}", origin) for d, origin in dirs for suffix in SCRIPT_SUFFIXES
            if (d / f"{name}{suffix}").is_file()]


def resolve_course(name: str, data: Path | DataFolder | None) -> CourseSource:
    """The course the box uses for `name` (session.course, or a file path), and from where.

    The same order as `device.content.resolve_circle`: the box's own copy first, then the
    installed content bundle, then the packaged one; a later copy with a higher version wins.
    A broken first choice is an error (CourseError), never silently skipped.
    """
    from device.content import Origin, installed_content_version

    found = course_candidates(name, data)
    if not found:
        looked = [*(data_folder(data).course_dirs() if data is not None else ()), packaged_courses_dir()]
        raise CourseError(name, [Problem(N_("no such course (looked in %(folders)s)"),
                                         folders=", ".join(str(d) for d in looked))])
    best_path, best_origin = found[0]
    best = load_course(best_path)
    for path, origin in found[1:]:
        try:
            other = load_course(path)
        except CourseError:
            continue
        if other.course.version > best.course.version:
            best, best_origin = other, origin
    version = installed_content_version(data) if best_origin is Origin.INSTALLED and data is not None else None
    return CourseSource(name, best, best_origin, version)


def list_courses(data: Path | DataFolder | None) -> list[str]:
    """The ids of every course the box can find (its own, installed, packaged), sorted.

    `resolve_course(id, data)` says which copy is used (and raises CourseError for a broken one).
    """
    dirs = [*(data_folder(data).course_dirs() if data is not None else ()), packaged_courses_dir()]
    ids = {p.stem for d in dirs if d.is_dir() for p in d.iterdir()
           if p.suffix in SCRIPT_SUFFIXES and p.is_file() and STEP_ID.match(p.stem)}
    return sorted(ids)


def check_course_circles(course: Course, data: Path | DataFolder | None) -> list[Problem]:
    """Circles the course names that the box cannot find or cannot use, in plain words.

    Each problem says which sessions use the circle, so the therapist knows what to fix.
    """
    from device.content import script_candidates
    from device.script import load_script

    uses: dict[str, list[Meeting]] = {}
    for meeting in course.plan():
        uses.setdefault(meeting.circle, []).append(meeting)
    problems = []
    for circle, meetings in uses.items():
        where = _meetings_words(meetings)
        found = script_candidates(circle, data)
        if not found:
            problems.append(Problem(N_("%(sessions)s the circle '%(circle)s', which this box does not have (not "
                                       "written on the box, not installed by a content bundle, not packaged)"),
                                    sessions=where, circle=circle))
            continue
        try:
            load_script(found[0][0])
        except ScriptError as exc:
            problems.append(Problem(N_("%(sessions)s the circle '%(circle)s', which cannot be used: %(why)s"),
                                    sessions=where, circle=circle, why=joined(exc.problems)))
    return problems


def _meetings_words(meetings: Sequence[Meeting]) -> Problem:
    """"Sessions 1 to 8 and 10 use" / "The bus stop after session 8 uses"."""
    numbers = [m.number for m in meetings if m.number is not None]
    stops = [m.after for m in meetings if m.bus_stop]
    parts = []
    if numbers:
        runs: list[list[int]] = []
        for n in numbers:
            if runs and runs[-1][-1] == n - 1:
                runs[-1].append(n)
            else:
                runs.append([n])
        spans = [str(r[0]) if len(r) == 1 else Problem(N_("%(first)s to %(last)s"), first=r[0], last=r[-1])
                 for r in runs]
        if len(numbers) == 1:
            parts.append(Problem(N_("Session %(numbers)s"), numbers=_and(spans)))
        else:
            parts.append(Problem(N_("Sessions %(numbers)s"), numbers=_and(spans)))
    if stops:
        after = _and([str(s) for s in stops])
        if not numbers:  # the sentence starts here: a capital letter
            template = N_("The bus stop after session %(after)s") if len(stops) == 1 else \
                N_("The bus stops after sessions %(after)s")
        else:
            template = N_("the bus stop after session %(after)s") if len(stops) == 1 else \
                N_("the bus stops after sessions %(after)s")
        parts.append(Problem(template, after=after))
    if len(meetings) == 1:
        return Problem(N_("%(who)s uses"), who=_and(parts))
    return Problem(N_("%(who)s use"), who=_and(parts))


def _and(items: Sequence[str]) -> str:
    """"1, 3 and 5", each item said in the reader's language where it is a Problem."""
    if len(items) == 1:
        return items[0]
    fields = {f"item{i}": item for i, item in enumerate(items)}
    template = ", ".join(f"%(item{i})s" for i in range(len(items) - 1)) + f" %(and)s %(item{len(items) - 1})s"
    return Problem(template, **fields, **{"and": Problem(N_("and"))})


def joined(problems: Sequence[str]) -> Problem:
    """Problems joined with "; " as one, each still said in the reader's language."""
    fields = {f"p{i}": problem for i, problem in enumerate(problems)}
    return Problem("; ".join(f"%(p{i})s" for i in range(len(problems))), **fields)


__all__ = ["DEFAULT_BUS_STOP_CIRCLE", "DEFAULT_COURSE_MESSAGES", "Course", "CourseError", "CourseMessages",
           "CourseSessions", "CourseSource", "LoadedCourse", "Meeting", "check_course_circles", "course_candidates",
           "list_courses", "load_course", "packaged_courses_dir", "parse_course", "resolve_course"]
