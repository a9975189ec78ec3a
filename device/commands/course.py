"""`circlebox course check FILE|ID` and `circlebox course list`: courses in plain words.

`check` says exactly what is wrong with a course, one line per problem (the field, the session
and the YAML line, and any circle it names that this box cannot find or use); exit 2 if any.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("course", help="check and list courses (sessions of circles with bus stops)")
    actions = p.add_subparsers(dest="course_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="check a course file or a course on this box; exit 2 on a problem")
    check.add_argument("course", metavar="FILE|ID", help="a course file (.yaml) or the id of a course on this box")
    check.set_defaults(handler=check_command)
    listing = actions.add_parser("list", help="list the courses this box has, and where each comes from")
    listing.set_defaults(handler=list_command)


def _summary(course: object) -> str:
    from device.course import Course

    assert isinstance(course, Course)
    stops = sum(1 for m in course.plan() if m.bus_stop)
    stop_words = f", {stops} bus stop{'s' if stops != 1 else ''}" if stops else ""
    return f"{course.sessions_total} session{'s' if course.sessions_total != 1 else ''}{stop_words}"


def check_command(args: argparse.Namespace) -> int:
    from device.commands import load_cli_config
    from device.course import CourseError, check_course_circles, resolve_course

    data = load_cli_config(args).data_dir
    try:
        source = resolve_course(args.course, data)
    except CourseError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 2
    problems = check_course_circles(source.course, data)
    where = source.loaded.path or args.course
    for problem in problems:
        print(f"{where}: {problem}", file=sys.stderr)
    if problems:
        return 2
    course = source.course
    print(f"{where}: ok: '{course.display_title}' version {course.version}, {_summary(course)}; "
          f"circles: {', '.join(sorted(course.circles()))} ({source.where()})")
    return 0


def list_command(args: argparse.Namespace) -> int:
    from device.commands import load_cli_config
    from device.course import CourseError, list_courses, resolve_course

    config = load_cli_config(args)
    ids = list_courses(config.data_dir)
    if not ids:
        print("no courses on this box (docs/courses.md says how to write one)")
    for course_id in ids:
        in_use = "  (the box's course)" if course_id == config.session.course else ""
        try:
            source = resolve_course(course_id, config.data_dir)
        except CourseError as exc:
            print(f"{course_id}: cannot be used ({len(exc.problems)} problem(s); "
                  f"circlebox course check {course_id} lists them){in_use}")
            continue
        course = source.course
        print(f"{course_id}: '{course.display_title}' version {course.version}, {_summary(course)}; "
              f"{source.where()}{in_use}")
    return 0
