"""Courses (device.course): written in YAML by a therapist, validated like a circle, expanded into
a plan of sessions and bus stops, found where circles are found, checked by `circlebox course
check`, and shipped in a content bundle with every circle they name."""

from __future__ import annotations

import tarfile

import pytest
from test_update_bundle import fake_render

from device.cli import main
from device.config import ConfigError, load_config
from device.content import Origin
from device.course import (
    MAX_COURSE_CHARS,
    CourseError,
    check_course_circles,
    list_courses,
    load_course,
    packaged_courses_dir,
    parse_course,
    resolve_course,
)
from device.datafolder import DataFolder
from device.script import load_script, packaged_scripts_dir
from device.update.manifest import parse_manifest

HEAD = "course: {id}\ntitle: A course\nversion: {version}\nlanguage: en\n"


def course_text(sessions: str, course_id: str = "weekly", version: int = 1, extra: str = "") -> str:
    return HEAD.format(id=course_id, version=version) + extra + "sessions:\n" + sessions


def problems_of(text: str) -> list[str]:
    with pytest.raises(CourseError) as caught:
        parse_course(text, "my-course.yaml")
    assert caught.value.source == "my-course.yaml"
    return caught.value.problems


# -- the plan ----------------------------------------------------------------------------------


def test_the_sample_course_is_sixteen_sessions_with_a_bus_stop_after_the_eighth():
    course = load_course(packaged_courses_dir() / "support-group.yaml").course
    plan = course.plan()
    assert course.sessions_total == 16 and len(plan) == 17
    assert [m.index for m in plan] == list(range(17))
    assert [m.number for m in plan] == [1, 2, 3, 4, 5, 6, 7, 8, None, 9, 10, 11, 12, 13, 14, 15, 16]
    stop = plan[8]
    assert stop.bus_stop and stop.after == 8 and stop.circle == "bus-stop"
    assert not any(m.bus_stop for m in plan if m is not stop)
    assert plan[2].label == "Session 3 of 16" and stop.label == "Bus stop after session 8"
    assert plan[9].label == "Session 9 of 16"
    assert course.circles() == {"three-step-circle", "bus-stop"}


def test_repeat_defaults_to_one_and_each_marked_entry_gets_its_own_bus_stop():
    course = parse_course(course_text(
        "  - {circle: opening, repeat: 2, bus_stop_after: true}\n"
        "  - circle: middle\n"
        "    bus_stop_after: true\n"
        "  - {circle: closing, repeat: 3}\n", extra="bus_stop_circle: change-day\n"), "x").course
    plan = course.plan()
    assert [(m.circle, m.number, m.after) for m in plan] == [
        ("opening", 1, None), ("opening", 2, None), ("change-day", None, 2), ("middle", 3, None),
        ("change-day", None, 3), ("closing", 4, None), ("closing", 5, None), ("closing", 6, None)]
    assert course.sessions_total == 6
    assert [m.label for m in plan if m.bus_stop] == ["Bus stop after session 2", "Bus stop after session 3"]


def test_a_course_without_bus_stops_does_not_play_the_bus_stop_circle():
    course = parse_course(course_text("  - {circle: shp-session, repeat: 5}\n"), "x").course
    assert course.circles() == {"shp-session"}
    assert [m.label for m in course.plan()][-1] == "Session 5 of 5"


def test_announcements_fill_in_the_numbers_with_the_courses_own_words():
    course = load_course(packaged_courses_dir() / "support-group.yaml").course
    plan = course.plan()
    assert course.announcement(plan[2]) == "This is session 3 of 16."
    assert course.announcement(plan[8]).startswith("This is the bus stop after session 8.")
    own = parse_course(course_text("  - {circle: a, repeat: 2}\n",
                                   extra='messages:\n  session: "Welcome to meeting {n}; {total} in all."\n'),
                       "x").course
    assert own.announcement(own.plan()[1]) == "Welcome to meeting 2; 2 in all."


# -- problems in a therapist's words -------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    (HEAD.format(id="weekly", version=1), "field sessions (line 1): is missing"),
    (HEAD.format(id="Weekly Group", version=1) + "sessions:\n  - circle: a\n",
     "field course (line 1): use lower-case letters"),
    (HEAD.format(id="weekly", version=0) + "sessions:\n  - circle: a\n", "field version (line 3): must be at least 1"),
    ("course: weekly\nversion: 1\nlanguage: English\nsessions:\n  - circle: a\n",
     "field language (line 3): must be a language code like en or en_US"),
    (course_text("  - circle: a\n", extra="colour: blue\n"),
     "field colour (line 5): is not a known field (check the spelling)"),
    (course_text("  - {circle: a, repeat: 8}\n  - circle: Friday Circle\n"),
     "sessions entry 2 (session 9), field circle (line 7): 'Friday Circle' is not a circle id"),
    (course_text("  - {circle: a, repeat: 3}\n  - circle: b\n    repeat: 0\n"),
     "sessions entry 2 (session 4), field repeat (line 8): must be at least 1"),
    (course_text("  - circle: a\n    repeat: 101\n"),
     "sessions entry 1 (session 1), field repeat (line 7): must be at most 100"),
    (course_text("  - circle: a\n    repeat: 2\n    bus_stop_after: maybe\n"),
     "sessions entry 1 (sessions 1 to 2), field bus_stop_after (line 8): must be true or false"),
    (course_text("  - circle: a\n  - just-a-circle-name\n"),
     "sessions entry 2 (session 2), field (the entry) (line 7): must be a mapping like {circle: three-step-circle"),
    (course_text("  - circle: a\n    circel: b\n"),
     "sessions entry 1 (session 1), field circel (line 7): is not a known field"),
    (course_text("  - {circle: a, repeat: 4}\n  - circle: b\n    bus_stop_after: true\n"),
     "sessions entry 2 (session 5), field bus_stop_after (line 8): a bus stop after the last session"),
    (course_text("  - circle: a\n", extra='messages:\n  session: "Session {number}"\n'),
     "field messages.session (line 6): {number} cannot be filled in here; use {n}, {total}"),
    (course_text("  - circle: a\n", extra='messages:\n  farewell: "Bye"\n'),
     "field messages.farewell (line 6): is not a known field"),
    (course_text("  - circle: a\n", extra="bus_stop_circle: Bus Stop\n"),
     "field bus_stop_circle (line 5): 'Bus Stop' is not a circle id"),
    (course_text("  - circle: a\n", extra="sessions_extra: [\n"), "not valid YAML (line 7)"),
    ("- circle: a\n", "must be a mapping with course, version, language and sessions"),
    (course_text("  - {circle: a, repeat: 100}\n  - {circle: b, repeat: 100}\n  - circle: c\n"),
     "field sessions (line 6): the course has 201 sessions; a course may have at most 200"),
])
def test_each_problem_names_the_field_the_session_and_the_line(text, expected):
    problems = problems_of(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_an_entry_that_fails_is_not_also_reported_as_an_empty_list():
    assert problems_of(course_text("  - circle: Bad Name\n")) == [
        "sessions entry 1 (session 1), field circle (line 6): 'Bad Name' is not a circle id: use lower-case "
        "letters, digits, - and _ (up to 40), starting with a letter or digit"]


def test_a_huge_file_is_refused_before_it_is_parsed_and_in_a_courses_words():
    problems = problems_of("#" * (MAX_COURSE_CHARS + 1))
    assert problems[0].startswith(f"is {MAX_COURSE_CHARS + 1:,} characters; a course file may be at most")
    many = problems_of("a: [" + "1," * 30_000 + "1]\n")
    assert many[0].startswith("has more than 20,000 entries") and "check that the file is a course" in many[0]


# -- where courses live --------------------------------------------------------------------------


@pytest.fixture
def data(tmp_path) -> DataFolder:
    return DataFolder(tmp_path / "data")


def put(folder, course_id: str, version: int, sessions: str = "  - {circle: three-step-circle, repeat: 2}\n"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{course_id}.yaml"
    path.write_text(course_text(sessions, course_id, version))
    return path


def test_course_paths_are_in_the_data_folder_map(data):
    assert data.course("weekly") == data.root / "courses" / "weekly.yaml"
    assert data.installed_courses == data.root / "current" / "content" / "courses"
    assert data.course_position("weekly") == data.root / "state" / "course-weekly.json"
    assert data.course_dirs() == (data.courses, data.installed_courses)


def test_resolve_order_matches_circles_box_copy_then_installed_then_packaged(data):
    assert resolve_course("support-group", data).origin is Origin.PACKAGED
    put(data.installed_courses, "support-group", 1)
    assert resolve_course("support-group", data).origin is Origin.INSTALLED
    put(data.courses, "support-group", 1)
    box = resolve_course("support-group", data)
    assert box.origin is Origin.BOX and box.editable and box.loaded.path == data.course("support-group")
    put(data.installed_courses, "support-group", 2)  # a programme's newer version wins over a local edit
    newer = resolve_course("support-group", data)
    assert newer.origin is Origin.INSTALLED and newer.version == 2 and not newer.editable


def test_a_broken_first_choice_is_an_error_not_skipped(data):
    data.courses.mkdir(parents=True)
    data.course("support-group").write_text("course: support-group\nversion: 1\n")
    with pytest.raises(CourseError) as caught:
        resolve_course("support-group", data)
    assert "field language" in str(caught.value)


def test_an_unknown_course_says_where_it_looked(data):
    with pytest.raises(CourseError) as caught:
        resolve_course("nowhere", data)
    assert caught.value.problems[0].startswith("no such course (looked in ")
    assert str(data.courses) in caught.value.problems[0] and str(packaged_courses_dir()) in caught.value.problems[0]


def test_a_course_file_path_is_used_as_given(tmp_path, data):
    path = put(tmp_path / "laptop", "my-course", 3)
    source = resolve_course(str(path), data)
    assert source.origin is Origin.FILE and source.course_id == "my-course" and source.version == 3


def test_list_courses_names_every_course_once(data):
    put(data.courses, "weekly", 1)
    put(data.installed_courses, "shp", 1)
    put(data.installed_courses, "weekly", 1)
    assert list_courses(data) == ["shp", "support-group", "weekly"]


def test_a_circle_the_box_cannot_find_is_named_with_the_sessions_that_use_it(data):
    course = parse_course(course_text(
        "  - {circle: three-step-circle, repeat: 2, bus_stop_after: true}\n"
        "  - {circle: friday-circle, repeat: 3}\n"
        "  - circle: three-step-circle\n", extra="bus_stop_circle: changeover\n"), "x").course
    assert check_course_circles(course, data) == [
        "The bus stop after session 2 uses the circle 'changeover', which this box does not have "
        "(not written on the box, not installed by a content bundle, not packaged)",
        "Sessions 3 to 5 use the circle 'friday-circle', which this box does not have "
        "(not written on the box, not installed by a content bundle, not packaged)",
    ]
    data.scripts.mkdir(parents=True)
    text = (packaged_scripts_dir() / "three-step-circle.yaml").read_text()
    (data.scripts / "friday-circle.yaml").write_text(text.replace("script: three-step-circle", "script: friday-circle"))
    (data.scripts / "changeover.yaml").write_text("script: changeover\nversion: 1\n")
    problems = check_course_circles(course, data)
    assert len(problems) == 1
    assert problems[0].startswith("The bus stop after session 2 uses the circle 'changeover', which cannot be used: ")


def test_the_sample_course_needs_only_packaged_circles(data):
    assert check_course_circles(resolve_course("support-group", data).course, data) == []


def test_the_bus_stop_circle_says_goodbye_welcomes_and_reads_the_agreements_again():
    script = load_script(packaged_scripts_dir() / "bus-stop.yaml").script
    kinds = {step.id: step.kind for step in script.steps}
    assert kinds["goodbye-round"] == "round" and kinds["welcome-round"] == "round"
    assert [s.id for s in script.steps].index("goodbye-round") < [s.id for s in script.steps].index("welcome-round")
    core = {step.id for step in script.steps if step.core}
    assert {"welcome", "goodbye-round", "welcome-round", "agreements"} <= core
    assert "agreements" in " ".join(str(p) for p in script.prompts()["step:agreements"])


# -- config ------------------------------------------------------------------------------------


def test_session_course_is_off_by_default_and_must_be_a_course_id(tmp_path):
    assert load_config(etc_path=None, overrides={"paths": {"data_dir": str(tmp_path)}}).session.course is None
    config = load_config(etc_path=None, overrides={"paths": {"data_dir": str(tmp_path)},
                                                  "session": {"course": "support-group"}})
    assert config.session.course == "support-group"
    with pytest.raises(ConfigError) as caught:
        load_config(etc_path=None, overrides={"paths": {"data_dir": str(tmp_path)},
                                             "session": {"course": "../etc/passwd"}})
    assert "is not a course id" in str(caught.value)


# -- the command line ----------------------------------------------------------------------------


def test_course_check_passes_a_good_course_and_lists_each_problem_on_its_own_line(tmp_path, data, capsys):
    assert main(["--data", str(data.root), "course", "check", "support-group"]) == 0
    out = capsys.readouterr().out
    assert "ok: 'Therapists' support group' version 1, 16 sessions, 1 bus stop" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(course_text("  - circle: Bad Name\n    repeat: 0\n", version=0))
    assert main(["--data", str(data.root), "course", "check", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"{bad}: field version (line 3): must be at least 1",
        f"{bad}: sessions entry 1 (session 1), field circle (line 6): 'Bad Name' is not a circle id: use "
        "lower-case letters, digits, - and _ (up to 40), starting with a letter or digit",
        f"{bad}: sessions entry 1 (session 1), field repeat (line 7): must be at least 1",
    ]


def test_course_check_fails_on_a_circle_the_box_cannot_find(data, capsys):
    put(data.courses, "weekly", 1, "  - {circle: friday-circle, repeat: 2}\n")
    assert main(["--data", str(data.root), "course", "check", "weekly"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Sessions 1 to 2 use the circle 'friday-circle'" in err


def test_course_list_says_where_each_course_comes_from_and_which_cannot_be_used(data, capsys):
    put(data.courses, "weekly", 4)
    data.course("broken").write_text("course: broken\n")
    assert main(["--data", str(data.root), "course", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("broken: cannot be used (3 problem(s); circlebox course check broken")
    assert lines[1].startswith(
        "support-group: 'Therapists' support group' version 1, 16 sessions, 1 bus stop; packaged")
    assert lines[2].startswith("weekly: 'A course' version 4, 2 sessions; box copy")


# -- content bundles -----------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path):
    assert main(["bundle", "keygen", "--out", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys" / "circlebox-signing.key", tmp_path / "keys" / "circlebox-signing.pub"


def build_args(laptop: DataFolder, key, out, *more: str) -> list[str]:
    return ["--data", str(laptop.root), "bundle", "build", "--key", str(key), "--kind", "content",
            "--version", "3", "--out", str(out), *more]


def test_a_course_bundle_carries_the_course_and_every_circle_it_names_and_the_box_finds_them(
        tmp_path, keys, capsys):
    from device.content import resolve_circle

    key, pub = keys
    laptop = DataFolder(tmp_path / "laptop")
    for circle in ("three-step-circle", "bus-stop"):
        fake_render(packaged_scripts_dir() / f"{circle}.yaml", laptop.cache)
    out = tmp_path / "course.cbx"
    assert main(build_args(laptop, key, out, "--course", "support-group")) == 0
    with tarfile.open(out) as tar:
        paths = {e.path for e in parse_manifest(tar.extractfile("manifest.json").read()).files}
    assert {"courses/support-group.yaml", "scripts/three-step-circle.yaml", "scripts/bus-stop.yaml",
            "cache/sets/three-step-circle.json", "cache/sets/bus-stop.json"} <= set(paths)
    box = DataFolder(tmp_path / "box")
    assert main(["bundle", "apply", str(out), "--root", str(box.root), "--pubkey", str(pub), "--stay-up", "0"]) == 0
    capsys.readouterr()
    source = resolve_course("support-group", box)
    assert source.origin is Origin.INSTALLED and source.release_version == 3
    assert source.loaded.path == box.installed_courses / "support-group.yaml"
    for circle in ("three-step-circle", "bus-stop"):
        assert resolve_circle(circle, box).origin is Origin.INSTALLED
    assert check_course_circles(source.course, box) == []


def test_a_course_bundle_is_refused_when_a_circle_is_not_rendered_or_not_content(tmp_path, keys, capsys):
    key, _pub = keys
    laptop = DataFolder(tmp_path / "laptop")
    fake_render(packaged_scripts_dir() / "three-step-circle.yaml", laptop.cache)
    out = tmp_path / "course.cbx"
    assert main(build_args(laptop, key, out, "--course", "support-group")) == 2
    err = capsys.readouterr().err
    assert "no rendered prompt set for 'bus-stop'" in err and "circlebox render bus-stop" in err
    assert not out.exists()
    args = build_args(laptop, key, out, "--course", "support-group")
    args[args.index("content")] = "voice"
    assert main(args) == 2
    assert "a course goes in a content bundle" in capsys.readouterr().err


def test_a_course_naming_a_missing_circle_cannot_be_bundled(tmp_path, keys, capsys):
    key, _pub = keys
    laptop = DataFolder(tmp_path / "laptop")
    put(laptop.courses, "weekly", 1, "  - {circle: friday-circle, repeat: 2}\n")
    assert main(build_args(laptop, key, tmp_path / "c.cbx", "--course", "weekly")) == 2
    assert "Sessions 1 to 2 use the circle 'friday-circle', which this box does not have" in capsys.readouterr().err


def test_a_content_bundle_with_a_broken_course_is_refused_before_the_box_switches(tmp_path, keys, capsys):
    key, pub = keys
    src = tmp_path / "src"
    (src / "courses").mkdir(parents=True)
    (src / "courses" / "weekly.yaml").write_text(course_text("  - circle: three-step-circle\n", version=0))
    out = tmp_path / "content.cbx"
    assert main(["bundle", "build", str(src), "--key", str(key), "--kind", "content", "--version", "2",
                 "--out", str(out)]) == 0
    box = DataFolder(tmp_path / "box")
    assert main(["bundle", "apply", str(out), "--root", str(box.root), "--pubkey", str(pub), "--stay-up", "0"]) == 1
    assert "field version (line 3): must be at least 1" in capsys.readouterr().out
    assert not (box.installed_courses / "weekly.yaml").exists()
