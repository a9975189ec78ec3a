"""The stick flow: bundles in, report and usage export out, exports marked only when the copy
on the stick reads back right; and the admin upload path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_update_helpers import FakeClock, Keys, RecordingAnnouncer, good_bundle, make_box

from device.update import field_export
from device.update import messages as M
from device.update.release import current_release
from device.update.upload import install_uploaded_bundle
from device.update.usb import find_bundles, import_from_stick, wait_then_finish


class FakeUsage:
    def __init__(self, ids=("s1", "s2")):
        self.ids, self.marked, self.exports = list(ids), [], 0

    def export_since_last(self, dest_dir: Path):
        self.exports += 1
        csv = dest_dir / "usage-box7.csv"
        csv.write_text("id,started_at\n" + "".join(f"{i},2026-11-20\n" for i in self.ids))
        dhis2 = dest_dir / "dhis2-box7.json"
        dhis2.write_text(json.dumps({"dataValues": [{"value": len(self.ids)}]}))
        return [csv, dhis2], list(self.ids)

    def mark_exported(self, ids):
        self.marked.extend(ids)


@pytest.fixture
def setup(tmp_path):
    keys = Keys()
    clock = FakeClock()
    announcer = RecordingAnnouncer(clock)
    box = make_box(tmp_path / "root", keys, clock, announcer=announcer)
    stick = tmp_path / "stick"
    stick.mkdir()
    return keys, box, stick, tmp_path


def reports(stick: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((stick / "circlebox" / "box7").glob("report-*.json"))]


def test_stick_installs_and_writes_report_and_export(setup):
    keys, box, stick, _tmp = setup
    assert import_from_stick(stick, box, "box7").get("code") == M.NO_UPDATE  # empty stick first
    good_bundle(stick, keys, 1, name="app-1.cbx")
    (stick / "._app-1.cbx").write_bytes(b"\x00\x05\x16\x07 macOS junk")  # skipped, not refused
    usage = FakeUsage()
    report = import_from_stick(stick, box, "box7", usage)
    assert report["versions_before"] == {} and report["versions_after"] == {"app": 1}
    assert report["result"] == "ok" and report["code"] == M.UPDATED
    on_stick = reports(stick)
    assert len(on_stick) == 2 and on_stick[-1]["versions_after"] == {"app": 1}
    assert on_stick[-1]["results"][0]["bundle"] == "app-1.cbx"
    out = stick / "circlebox" / "box7"
    assert (out / "usage-box7.csv").read_text().startswith("id,started_at")
    assert (out / "dhis2-box7.json").exists()
    assert usage.marked == ["s1", "s2"]
    assert report["usage_export"]["verified"] is True
    codes = box.seams.announcer.codes
    assert codes[-2:] == [M.DATA_SAVED, M.REMOVE_STICK]
    assert codes.index(M.COPYING) < codes.index(M.INSTALLING) < codes.index(M.UPDATED)


def test_same_stick_twice_is_a_noop_but_still_reports(setup):
    keys, box, stick, _tmp = setup
    good_bundle(stick, keys, 1, name="app-1.cbx")
    import_from_stick(stick, box, "box7")
    link_before = current_release(box.root, "app")
    report = import_from_stick(stick, box, "box7")
    assert report["code"] == M.ALREADY_INSTALLED and report["result"] == "ok"
    assert report["versions_before"] == report["versions_after"] == {"app": 1}
    assert current_release(box.root, "app") == link_before
    assert len(reports(stick)) == 2


def test_refused_bundle_is_reported_with_its_code(setup):
    keys, box, stick, _tmp = setup
    good_bundle(stick, keys, 1, name="app-1.cbx", compatible="other-device")
    report = import_from_stick(stick, box, "box7")
    assert report["result"] == "refused" and report["code"] == M.WRONG_DEVICE
    assert reports(stick)[0]["results"][0]["message"] == "This update is for a different device."


def test_export_not_marked_when_the_stick_lies(setup, monkeypatch):
    _keys, box, stick, _tmp = setup
    real_write = field_export.write_file_at

    def lying_write(parent_fd, name, data, mode=0o644):  # the stick silently drops the last byte
        real_write(parent_fd, name, data[:-1] if name.endswith(".csv") else data, mode)

    monkeypatch.setattr(field_export, "write_file_at", lying_write)
    usage = FakeUsage()
    report = import_from_stick(stick, box, "box7", usage)
    assert usage.marked == []
    assert report["usage_export"]["verified"] is False
    assert "differs" in report["usage_export"]["error"]
    assert box.seams.announcer.codes[-2:] == [M.DATA_NOT_SAVED, M.REMOVE_STICK]


def test_stick_that_cannot_be_written(setup):
    _keys, box, stick, _tmp = setup

    class ReadOnly:
        def __enter__(self):
            raise OSError(30, "Read-only file system")

        def __exit__(self, *exc):
            return False

    usage = FakeUsage()
    report = import_from_stick(stick, box, "box7", usage, writable=ReadOnly)
    assert "Read-only" in report["write_error"] and usage.marked == []
    assert box.seams.announcer.codes[-2:] == [M.DATA_NOT_SAVED, M.REMOVE_STICK]


def test_real_usage_store_is_marked_after_verified_copy(setup):
    _keys, box, stick, tmp = setup
    usage_mod = pytest.importorskip("device.usage")
    store = usage_mod.UsageStore(tmp / "usage.sqlite")
    store.upsert(
        {
            "id": "abc",
            "box": "box7",
            "script": "three-step-circle",
            "script_version": 1,
            "started_at": "2026-11-20T10:00:00+00:00",
            "steps_planned": 3,
            "core_planned": 2,
            "duration_s": 1800.0,  # a circle held: a shorter one is a test run, not exported
            "core_delivered": 2,
        }
    )
    assert len(store.sessions(unexported_only=True)) == 1
    exporter = field_export.StoreExporter(store, {}, "box7")
    report = import_from_stick(stick, box, "box7", exporter)
    assert report["usage_export"]["verified"] is True and report["usage_export"]["sessions"] == 1
    assert store.sessions(unexported_only=True) == []
    assert any(p.suffix == ".csv" for p in (stick / "circlebox" / "box7").iterdir())


def test_bundles_found_in_natural_order(tmp_path):
    for name in ("app-10.cbx", "app-9.cbx", "content-2.cbx", ".hidden.cbx", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "updates").mkdir()
    (tmp_path / "updates" / "voice-1.cbx").write_bytes(b"x")
    assert [p.name for p in find_bundles(tmp_path)] == [
        "app-9.cbx",
        "app-10.cbx",
        "content-2.cbx",
        "voice-1.cbx",
    ]


def test_admin_upload_takes_the_same_path(setup):
    keys, box, _stick, tmp = setup
    upload = good_bundle(tmp, keys, 3, name="upload.cbx")
    result = install_uploaded_bundle(upload, box)
    assert result.code == M.UPDATED and result.message == "Updated to version 3."
    assert upload.exists()  # the upload itself is left to the page to delete
    again = install_uploaded_bundle(good_bundle(tmp, keys, 2, name="old.cbx"), box)
    assert again.code == M.OLDER and again.to_dict()["message"].startswith("This update is older")


def test_staged_import_waits_for_the_circle_then_switches(setup):
    keys, box, stick, _tmp = setup
    circle = {"left_s": 0.0}
    box.seams.circle_running = lambda: circle["left_s"] > 0
    good_bundle(stick, keys, 1, name="app-1.cbx")
    assert import_from_stick(stick, box, "box7")["code"] == M.UPDATED
    (stick / "app-1.cbx").unlink()
    good_bundle(stick, keys, 2, name="app-2.cbx")
    circle["left_s"] = 3600.0
    assert import_from_stick(stick, box, "box7")["code"] == M.STAGED

    def sleep(seconds: float) -> None:  # the circle ends after an hour of fake time
        box.seams.clock.sleep(seconds)
        circle["left_s"] -= seconds

    box.seams.sleep = sleep
    spoken_before = len(box.seams.announcer.said)
    [result] = wait_then_finish(box)
    assert result.code == M.UPDATED and current_release(box.root, "app") == "app-2"
    waited = box.seams.announcer.codes[spoken_before:]
    assert M.STILL_WORKING not in waited[: waited.index(M.RESTARTING)]  # silent during the circle


def test_pending_from_an_earlier_insert_is_finished_by_the_next_one(setup):
    keys, box, stick, _tmp = setup
    running = {"now": True}
    box.seams.circle_running = lambda: running["now"]
    good_bundle(stick, keys, 1, name="app-1.cbx")
    assert import_from_stick(stick, box, "box7")["code"] == M.STAGED
    running["now"] = False
    (stick / "app-1.cbx").unlink()
    report = import_from_stick(stick, box, "box7")
    assert [r["code"] for r in report["results"]] == [M.UPDATED]
    assert report["versions_after"] == {"app": 1}


def test_udev_rule_only_starts_the_unit():
    repo = Path(__file__).resolve().parents[1]
    rule = (repo / "firmware_config/udev/99-circlebox-usb.rules").read_text()
    active = " ".join(line for line in rule.splitlines() if not line.startswith("#"))
    assert 'ENV{SYSTEMD_WANTS}+="circlebox-usb-import@%k.service"' in active
    assert "RUN" not in active and 'ENV{ID_BUS}=="usb"' in active


def test_unit_mounts_the_stick_read_only_and_runs_the_import():
    repo = Path(__file__).resolve().parents[1]
    unit = (repo / "systemd/circlebox-usb-import@.service").read_text()
    mount = next(line for line in unit.splitlines() if "/bin/mount " in line or "/systemd-mount " in line)
    assert all(opt in mount for opt in ("ro,", "nosuid", "nodev", "noexec"))
    assert "circlebox usb-import --remount /run/circlebox-usb/%i" in unit
    assert "umount" in unit and "BindsTo" not in unit


def test_usb_import_command_wiring(tmp_path, monkeypatch, capsys):
    """`circlebox usb-import STICK --data DIR`: config, box id, usage store, report; only the
    systemd seams are swapped for fakes."""
    from device.cli import main
    from device.update import asuser, factory

    # The export runs as the runtime's user on a box (tests/test_update_privilege.py drops for
    # real); this machine has no `circlebox` user, so here it runs inline as the test's user.
    monkeypatch.setattr(asuser, "RUNTIME_USER", "root")
    monkeypatch.setattr(asuser, "run_as", lambda uid, gid, work: work())

    keys = Keys()
    data = tmp_path / "data"
    data.mkdir()
    (data / "box-id").write_text("kx42\n")
    from device.usage import UsageStore

    UsageStore(data / "usage.sqlite").upsert(
        {
            "id": "s9",
            "box": "kx42",
            "script": "c",
            "script_version": 1,
            "started_at": "2026-11-20T10:00:00+00:00",
            "steps_planned": 3,
            "core_planned": 2,
            "duration_s": 1800.0,  # a circle held: a shorter one is a test run, not exported
            "core_delivered": 2,
        }
    )
    stick = tmp_path / "stick"
    stick.mkdir()
    good_bundle(stick, keys, 1, name="app-1.cbx")
    monkeypatch.setattr(
        factory,
        "real_box",
        lambda data_dir, announcer, keys_dir=None, pubkey=None: make_box(Path(data_dir), keys, announcer=announcer),
    )
    assert main(["--data", str(data), "usb-import", str(stick)]) == 0
    out = capsys.readouterr().out
    assert "[S02] Copying. Do not remove the stick." in out and "[U00] Updated to version 1." in out
    assert out.index("[S07]") < out.index("[S03] You can remove the stick.")
    [report] = (stick / "circlebox" / "kx42").glob("report-*.json")
    assert json.loads(report.read_text())["versions_after"] == {"app": 1}
    assert list((stick / "circlebox" / "kx42").glob("usage-*.csv"))
    assert UsageStore(data / "usage.sqlite").sessions(unexported_only=True) == []


def test_the_unit_form_refuses_a_folder_where_no_stick_is_mounted(tmp_path):
    """The importer must never take an empty folder for a stick: it would say "no update" and
    write the report and the usage export into the box's own /run (found booting the image)."""
    import subprocess
    import sys

    folder = tmp_path / "circlebox-usb" / "sda"
    folder.mkdir(parents=True)
    run = subprocess.run([sys.executable, "-m", "device.cli", "usb-import", "--remount", str(folder)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert f"no stick is mounted at {folder}: nothing was read from it or written to it" in run.stderr
    assert list(folder.iterdir()) == []
