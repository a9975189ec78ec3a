"""The Courses page: list courses with where each stands, write and reorder one, use it on the box.

A course (device.course) is an ordered list of sessions, each a circle, with bus stops after
chosen sessions. The editor works without JavaScript: adding, moving and removing a session are
form posts that return the changed form. Check and Save validate with `device.course`; a save
writes the box's own copy atomically (`DataFolder.courses`). "Use on the box" sets the admin
layer's `session.course`, as the Circles page sets `session.script`, and tells the box.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from device.config import ConfigError
from device.datafolder import DataFolder
from local_admin import course_store, state, store
from local_admin.i18n import gettext as _
from local_admin.i18n import problem_text
from local_admin.settings import save_layer

bp = Blueprint("courses", __name__, url_prefix="/courses")

STRUCTURE_OP = re.compile(r"^(add|del|up|down):?(\d*)$")


def _in_use() -> str | None:
    return state().config.session.course


def _status_block() -> dict | None:
    """The running box's "course" status block, or None when it is off or plays no course."""
    from local_admin.backends import BoxNotRunning

    try:
        status = state().control.status()
    except BoxNotRunning:
        return None
    block = status.get("course") if isinstance(status, dict) else None
    return block if isinstance(block, dict) else None


def _resolve(course_id: str) -> Any:
    """device.course's source for this id (box copy, installed, packaged), or None."""
    from device.course import CourseError, resolve_course

    if not course_store.valid_id(course_id):
        return None
    try:
        return resolve_course(course_id, DataFolder(state().data_dir))
    except CourseError:
        return None


def _source_text(source: Any) -> str:
    return source.loaded.text


def _origin(source: Any) -> str:
    return str(source.origin.value)


def _circles() -> list[tuple[str, str]]:
    """(id, title) of every circle the box can play, for the session and bus-stop lists."""
    return [(c.id, c.title) for c in store.list_circles(state().data_dir) if not c.error]


# -- list -------------------------------------------------------------------------------------------


@bp.route("/")
def index():
    st = state()
    courses = course_store.list_course_infos(st.data_dir, _in_use(), _status_block())
    return render_template("courses.html", courses=courses, in_use=_in_use(), errors={}, form={},
                           making=_making(courses))


def _making(courses: list) -> dict[str, Any]:
    """Course id -> its announcements' render job still queued or running (or the last failed)."""
    jobs = state().renders.jobs
    out: dict[str, Any] = {}
    for info in courses:
        key = announce_key(info.id)
        mine = sorted((j for j in list(jobs.values()) if j.script == key), key=lambda j: j.started)
        if mine and (mine[-1].state in ("queued", "running") or mine[-1].state == "failed"):
            out[info.id] = mine[-1]
    return out


@bp.route("/<course_id>/use", methods=["POST"])
def use(course_id: str):
    source = _resolve(course_id)
    if source is None:
        abort(404)
    if course_store.announcements_ready(source.course, DataFolder(state().data_dir)):
        return _set_course(course_id)
    if _announce(source.course, use_after=True):
        flash(_("The box is making this course's announcements (“This is session 1 of %(total)s”); it "
                "will use the course when they are ready, in a minute or two.",
                total=source.course.sessions_total), "info")
    return redirect(url_for("courses.index"))


@bp.route("/stop-using", methods=["POST"])
def stop_using():
    """Back to one circle: the box plays session.script again (where the course stands is kept)."""
    return _set_course(None)


def _set_course(course_id: str | None):
    try:
        flash(_use_course(course_id), "ok")
    except ConfigError as exc:
        flash(str(exc), "error")
    return redirect(url_for("courses.index"))


def _use_course(course_id: str | None) -> str:
    """Set the admin layer's session.course (None: back to session.script) and tell the box;
    the sentence that says when it takes it (local_admin.applies). Raises ConfigError."""
    from local_admin.applies import Change, tell_box

    save_layer({"session": {"course": course_id}})
    what = course_id if course_id else _("the circle chosen on the Circles page")
    return tell_box(state().control, Change(what))


def announce_key(course_id: str) -> str:
    """The render queue's name for a course's announcements (never a circle id: it has a dot)."""
    return f"course.{course_id}"


def _announce(course: Any, *, use_after: bool = False) -> bool:
    """Queue the rendering of the course's announcements (Piper, on the render thread); with
    `use_after`, the course is put on the box once they are ready. False (and a message) when
    this box cannot render."""
    from flask import current_app

    from local_admin import backends
    from local_admin.i18n import carry_language

    st = state()
    render = st.render_course
    if render is None:
        if not backends.render_available():
            flash(_("The renderer is not installed here, so this course's announcements cannot be "
                    "made on this box."), "error")
            return False
        from device.course_play import render_announcements as render
    app = current_app._get_current_object()
    config, data = st.config, DataFolder(st.data_dir)
    in_language = carry_language()

    def work(job):
        from device.course_play import AnnouncementMissing

        job.total = len(course.plan())
        try:
            render(course, config, data)
        except AnnouncementMissing as exc:  # no voice of its language: the sessions play unannounced
            with app.app_context(), in_language():
                said = _("The box cannot say which session it is: %(why)s", why=str(exc))
                return f"{said} {_use_course(course.course)}" if use_after else said
        with app.app_context(), in_language():
            ready = _("The announcements of %(name)s are ready.", name=course.course)
            if use_after:
                return f"{ready} {_use_course(course.course)}"
            if st.config.session.course == course.course:
                from local_admin.applies import Change, tell_box

                return f"{ready} {tell_box(st.control, Change(course.course))}"
            return ready

    st.renders.submit(announce_key(course.course), course.version, work)
    return True


@bp.route("/<course_id>/copy", methods=["POST"])
def copy(course_id: str):
    source = _resolve(course_id)
    if source is None:
        abort(404)
    new_id = request.form.get("new_id", "").strip()
    errors: dict[str, str] = {}
    if not new_id:
        errors["new_id"] = _("give the course a short name, like my-course")
    elif not course_store.valid_id(new_id):
        errors["new_id"] = _("use lower-case letters, digits, - and _ (up to 40), like my-course")
    elif _resolve(new_id) is not None or course_store.own_path(state().data_dir, new_id).exists():
        errors["new_id"] = _("there is already a course called %(name)s", name=new_id)
    if errors:
        courses = course_store.list_course_infos(state().data_dir, _in_use(), _status_block())
        return render_template("courses.html", courses=courses, in_use=_in_use(), errors=errors,
                               form={"copy_of": course_id, "new_id": new_id}, making=_making(courses)), 400
    data = course_store.raw_dict(_source_text(source))
    form = course_store.course_to_form(data)
    form["course"] = new_id
    form["copy_of"] = course_id
    if form["title"]:
        form["title"] = _("%(title)s (copy)", title=form["title"])[:120]
    flash(_("This is a copy of %(name)s. Check it and press Save to keep it.", name=course_id), "info")
    return _editor(form, is_new=True, base=data)


# -- editor -----------------------------------------------------------------------------------------


@bp.route("/new", methods=["GET", "POST"])
def new():
    if request.method == "GET":
        circles = _circles()
        form = course_store.empty_form(state().config.session.script if circles else "")
        return _editor(form, is_new=True)
    return _handle_post(None)


@bp.route("/<course_id>/edit", methods=["GET", "POST"])
def edit(course_id: str):
    source = _resolve(course_id)
    own = course_store.own_path(state().data_dir, course_id) if course_store.valid_id(course_id) else None
    if source is None and (own is None or not own.exists()):
        abort(404)
    if source is not None and _origin(source) != "box copy" and not (own and own.exists()):
        flash(_("%(name)s is not written on this box (it is built in or came in a content bundle): "
                "copy it (under “Copy to edit”) and edit the copy.", name=course_id), "error")
        return redirect(url_for("courses.index"))
    if request.method == "POST":
        return _handle_post(course_id)
    text = own.read_text(encoding="utf-8") if own is not None and own.exists() else _source_text(source)
    return _editor(course_store.course_to_form(course_store.raw_dict(text)), is_new=False)


def _editor(form: dict, *, is_new: bool, errors: dict | None = None, general: list | None = None,
            status: int = 200, focus: int | None = None, base: dict | None = None):
    circles = _circles()
    known = {cid for cid, _title in circles}
    names = [row["circle"] for row in form["sessions"]] + [form.get("bus_stop_circle", "")]
    missing = [name for name in dict.fromkeys(names) if name and name not in known]
    labels = {"course": _("Short name"), "title": _("Title"), "language": _("Language"),
              "bus_stop_circle": _("Circle played at each bus stop")}
    for i, _row in enumerate(form["sessions"]):
        labels[f"c{i}_circle"] = _("Row %(n)s: circle", n=i + 1)
        labels[f"c{i}_repeat"] = _("Row %(n)s: sessions in a row", n=i + 1)
        labels[f"c{i}_bus_stop"] = _("Row %(n)s: bus stop", n=i + 1)
    return render_template(
        "courses_editor.html",
        form=form,
        is_new=is_new,
        errors=errors or {},
        general=general or [],
        field_labels=labels,
        circles=circles,
        missing=missing,
        numbers=_session_numbers(form),
        focus=focus,
        base_messages=bool(base and base.get("messages")),
        add_default=_add_default(form, circles),
    ), status


def _add_default(form: dict, circles: list[tuple[str, str]]) -> str:
    """The circle "Add a session" offers first: the last session's, else any but the bus stop's."""
    if form["sessions"] and form["sessions"][-1]["circle"]:
        return form["sessions"][-1]["circle"]
    others = [cid for cid, _title in circles if cid != form.get("bus_stop_circle")]
    return others[0] if others else ""


def _session_numbers(form: dict) -> list[str]:
    """Each row's sessions in words ("Sessions 1 to 8", "Session 9"), as the plan numbers them."""
    out, start = [], 1
    for row in form["sessions"]:
        repeat = int(row["repeat"]) if str(row["repeat"]).isdigit() and int(row["repeat"]) > 0 else 1
        end = start + repeat - 1
        out.append(_("Session %(n)s", n=start) if repeat == 1
                   else _("Sessions %(first)s to %(last)s", first=start, last=end))
        start = end + 1
    return out


def _handle_post(course_id: str | None):
    is_new = course_id is None
    form = course_store.form_from_request(request.form)
    if not is_new:
        form["course"] = course_id
    op = request.form.get("op", "check")
    structure = STRUCTURE_OP.match(op)
    if structure:  # the form's shape changes: no validation, the changed form back (no JS needed)
        return _editor(form, is_new=is_new, focus=_restructure(form, structure[1], structure[2]))
    st = state()
    base = course_store.raw_dict(_saved_text(course_id) if course_id else "")
    errors: dict[str, str] = {}
    if is_new:
        if not form["course"]:
            errors["course"] = _("give the course a short name, like my-course")
        elif not course_store.valid_id(form["course"]):
            errors["course"] = _("use lower-case letters, digits, - and _ (up to 40), like my-course")
        elif _resolve(form["course"]) is not None or course_store.own_path(st.data_dir, form["course"]).exists():
            errors["course"] = _("there is already a course called %(name)s; choose another name",
                                 name=form["course"])
        copied = form.get("copy_of", "")
        if copied and (source := _resolve(copied)) is not None:
            base = course_store.raw_dict(_source_text(source))  # a copy keeps its spoken messages
    if not form["sessions"]:
        errors["sessions"] = _("add at least one session")
    version = _next_version(form["course"]) if course_store.valid_id(form["course"]) else 1
    data = course_store.form_to_course(form, base, version, errors)
    text = course_store.dump_yaml(data)
    general: list[str] = []
    loaded = None
    if not errors:
        loaded, general = _validate(text, form, errors)
    if errors or general or loaded is None:
        return _editor(form, is_new=is_new, errors=errors, general=general, status=400, base=base)
    if op != "save":
        flash(_("No problems found. Press Save to keep it."), "ok")
        return _editor(form, is_new=is_new, base=base)
    course_store.save(st.data_dir, form["course"], text)
    message = _("Saved %(name)s, version %(version)s.", name=form["course"], version=version)
    course = loaded.course
    if not course_store.announcements_ready(course, DataFolder(st.data_dir)):
        if _announce(course):
            message += " " + _("The box is making its announcements (“This is session 1 of %(total)s”) now.",
                               total=course.sessions_total)
    elif _in_use() == form["course"]:
        from local_admin.applies import Change, tell_box

        message += " " + tell_box(st.control, Change(_("version %(version)s", version=version)))
    if _in_use() != form["course"]:
        message += " " + _('Press "Use on the box" to play it.')
    flash(message, "ok")
    return redirect(url_for("courses.index"))


def _restructure(form: dict, action: str, where: str) -> int | None:
    """Add, remove or move one row of the sessions list; the row to focus afterwards."""
    rows = form["sessions"]
    index = int(where) if where else -1
    if action == "add":
        circle = request.form.get("new_circle", "").strip()[:80]
        rows.append(course_store.new_session(circle))
        return len(rows) - 1
    if not 0 <= index < len(rows):
        return None
    if action == "del":
        rows.pop(index)
        return None
    if action == "up" and index > 0:
        rows[index - 1], rows[index] = rows[index], rows[index - 1]
        return index - 1
    if action == "down" and index < len(rows) - 1:
        rows[index + 1], rows[index] = rows[index], rows[index + 1]
        return index + 1
    return index


def _saved_text(course_id: str) -> str:
    own = course_store.own_path(state().data_dir, course_id)
    if own.exists():
        return own.read_text(encoding="utf-8")
    source = _resolve(course_id)
    return _source_text(source) if source is not None else ""


def _next_version(course_id: str) -> int:
    """One more than the highest version of this course on the box (its own copy or another)."""
    versions = [course_store.raw_dict(_saved_text(course_id)).get("version")]
    source = _resolve(course_id)
    if source is not None:
        versions.append(course_store.raw_dict(_source_text(source)).get("version"))
    return max((v for v in versions if isinstance(v, int)), default=0) + 1


def _validate(text: str, form: dict, errors: dict) -> tuple[Any, list[str]]:
    """(the course, general problems): device.course's problems with it, each at its field where
    it has one; also each circle it names that the box cannot find or use."""
    from device.course import CourseError, check_course_circles, parse_course

    try:
        loaded = parse_course(text, form["course"] or "course")
    except CourseError as exc:
        loaded, problems = None, exc.problems
    else:
        problems = check_course_circles(loaded.course, DataFolder(state().data_dir))
    fields, general = course_store.problems_to_fields(problems, form)
    for key, message in fields.items():
        errors.setdefault(key, problem_text(message))
    return (None if problems else loaded), [problem_text(p) for p in general]
