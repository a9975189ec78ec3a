"""Nothing a service can write is trusted by the root updater (security review, issue 12).

The review, as the admin service's user: renamed the root-owned `update/` away (the data
folder was group-writable, no sticky bit), planted its own with `incoming/.copy.partial` as a
symlink, and root wrote the uploaded bytes through it into a root-only folder. It also set
`paths.data_dir` in the admin layer, which the root commands read. These tests do the same with
the real service ids (`setpriv`), on a data folder laid out as firmware_config/tmpfiles.d says.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_update_helpers import Keys, good_bundle, make_box

from device.update import messages as M
from device.update.inbox import inbox_dir, process_inbox
from device.update.installer import apply_bundle
from device.update.safefs import UnsafePath

REPO = Path(__file__).resolve().parents[1]
TMPFILES = REPO / "firmware_config/tmpfiles.d/circlebox.conf"
RUNTIME_UID = 940  # firmware_config/sysusers.d/circlebox.conf
ADMIN_UID = 941
IDS = {"root": 0, "circlebox": RUNTIME_UID, "circlebox-admin": ADMIN_UID}

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to act as the service users"
)


def as_admin(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Python run as the admin service's user and groups (circlebox-admin, member of circlebox)."""
    return subprocess.run(
        ["setpriv", f"--reuid={ADMIN_UID}", f"--regid={ADMIN_UID}", f"--groups={RUNTIME_UID}",
         sys.executable, "-c", code],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def box_data():
    """A data folder with the box's own owners and modes, read from the tmpfiles file."""
    top = Path(tempfile.mkdtemp(prefix="cbx-priv-", dir="/tmp"))
    os.chmod(top, 0o755)
    data = top / "data"
    for line in TMPFILES.read_text().splitlines():
        fields = line.split()
        if not fields or fields[0] != "d" or not fields[1].startswith("/var/lib/circlebox"):
            continue
        path = data / fields[1].removeprefix("/var/lib/circlebox").lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, IDS[fields[3]], IDS[fields[4]])
        os.chmod(path, int(fields[2], 8))
    yield data
    shutil.rmtree(top)


@needs_root
def test_admin_cannot_move_the_updaters_folder_aside(box_data):
    for folder in ("update", "releases", "current"):
        proc = as_admin(f"import os; os.rename({folder!r}, {folder + '.old'!r})", box_data)
        assert proc.returncode != 0 and "PermissionError" in proc.stderr, (folder, proc.stderr)
        assert (box_data / folder).is_dir() and not (box_data / f"{folder}.old").exists()
    # ...nor write inside them.
    proc = as_admin("open('update/incoming', 'w')", box_data)
    assert "PermissionError" in proc.stderr


@needs_root
def test_a_planted_update_folder_is_refused_and_nothing_is_written_through_it(box_data, tmp_path):
    """The review's attack: an `update/` the admin made, `.copy.partial` a symlink into root's
    files. (Here the admin gets in before the folder exists; renaming is covered above.)"""
    shutil.rmtree(box_data / "update")
    target = tmp_path / "root-only" / "evil.pth"
    target.parent.mkdir(mode=0o700)
    target.write_text("# root's file\n")
    plant = (
        "import os; os.makedirs('update/incoming'); "
        f"os.symlink({str(target)!r}, 'update/incoming/.copy.partial')"
    )
    proc = as_admin(plant, box_data)
    assert proc.returncode == 0, proc.stderr
    keys = Keys()
    result = apply_bundle(good_bundle(tmp_path, keys, 1), make_box(box_data, keys))
    assert result.code == M.INTERNAL_ERROR and "not safe" in result.detail, result
    assert "uid 941" in result.detail
    assert target.read_text() == "# root's file\n"


@needs_root
def test_planted_symlinks_in_the_updaters_folders_are_never_written_through(box_data, tmp_path):
    """Root's own folders trusted: a symlink left at the partial copy's name (by anything) is
    replaced by a fresh file, not followed (O_NOFOLLOW | O_EXCL)."""
    target = tmp_path / "victim"
    target.write_text("untouched\n")
    (box_data / "update" / "incoming").mkdir()
    (box_data / "update" / "incoming" / ".copy.partial").symlink_to(target)
    keys = Keys()
    box = make_box(box_data, keys)
    box_copy_in = __import__("device.update.incoming", fromlist=["copy_in"]).copy_in
    local, _sha = box_copy_in(good_bundle(tmp_path, keys, 1), box, box.narrator())
    assert local.is_file() and not local.is_symlink()
    assert target.read_text() == "untouched\n"


@needs_root
def test_a_symlink_in_the_inbox_is_never_opened_by_root(box_data, tmp_path):
    secret = tmp_path / "secret.cbx"
    secret.write_bytes(b"root's secret")
    os.chmod(secret, 0o600)
    proc = as_admin(f"import os; os.symlink({str(secret)!r}, 'update-inbox/x.cbx')", box_data)
    assert proc.returncode == 0, proc.stderr
    keys = Keys()
    assert process_inbox(box_data, make_box(box_data, keys)) == []
    # An upload the admin service really wrote is still installed.
    bundle = good_bundle(tmp_path, keys, 1)
    shutil.copy(bundle, inbox_dir(box_data) / "up.cbx")
    os.chown(inbox_dir(box_data) / "up.cbx", ADMIN_UID, ADMIN_UID)
    [result] = process_inbox(box_data, make_box(box_data, keys))
    assert result.code == M.UPDATED


def cli_args(**kw) -> argparse.Namespace:
    return argparse.Namespace(config=kw.get("config"), data=kw.get("data"))


def test_root_commands_never_read_the_admin_layer(tmp_path):
    from device.commands.usb_import import root_config

    data = tmp_path / "data"
    data.mkdir()
    etc = tmp_path / "etc.yaml"
    etc.write_text(f"paths:\n  data_dir: {data}\n")
    (data / "admin-config.yaml").write_text(f"paths:\n  data_dir: {tmp_path / 'elsewhere'}\n")
    assert root_config(cli_args(config=str(etc))).data_dir == data


def test_root_commands_refuse_a_config_others_can_change(tmp_path):
    from device.commands.usb_import import root_config
    from device.errors import UserFacingError

    etc = tmp_path / "etc.yaml"
    etc.write_text(f"paths:\n  data_dir: {tmp_path}\n")
    os.chmod(etc, 0o664)
    with pytest.raises(UserFacingError, match="other than root"):
        root_config(cli_args(config=str(etc)))


def test_the_data_folder_must_not_be_swappable(tmp_path):
    from device.update.safefs import check_private_dir

    data = tmp_path / "data"
    data.mkdir()
    os.chmod(data, 0o2775)  # the old layout: group-writable, no sticky bit
    with pytest.raises(UnsafePath, match="sticky"):
        check_private_dir(data / "update")
    os.chmod(data, 0o3775)
    check_private_dir(data / "update")


def usage_store_with_one_circle(path: Path):
    from device.usage import UsageStore

    store = UsageStore(path)
    store.upsert({
        "id": "abc", "box": "box7", "script": "three-step-circle", "script_version": 1,
        "started_at": "2026-11-20T10:00:00+00:00", "steps_planned": 3, "core_planned": 2,
        "duration_s": 1800.0, "core_delivered": 2,
    })
    return store


@needs_root
def test_usage_export_runs_as_the_runtime_user(box_data, tmp_path):
    from device.update.asuser import RuntimeUserExporter
    from device.update.usb import import_from_stick

    usage_store_with_one_circle(box_data / "usage.sqlite")
    for leftover in box_data.glob("usage.sqlite*"):
        os.chown(leftover, RUNTIME_UID, RUNTIME_UID)
    stick = tmp_path / "stick"
    stick.mkdir()
    keys = Keys()
    exporter = RuntimeUserExporter(box_data, "box7", ids=(RUNTIME_UID, RUNTIME_UID))
    report = import_from_stick(stick, make_box(box_data, keys), "box7", exporter)
    assert report["usage_export"]["verified"] is True and report["usage_export"]["sessions"] == 1, report
    assert any(p.suffix == ".csv" for p in (stick / "circlebox" / "box7").iterdir())
    # Nothing in the shared folder became root's (root never opened the database).
    assert {p.stat().st_uid for p in box_data.glob("usage.sqlite*")} == {RUNTIME_UID}


@needs_root
def test_a_usage_database_symlink_never_reaches_roots_files(box_data, tmp_path):
    """A service replaces usage.sqlite with a symlink to a database only root may touch: the
    export (as the runtime's user) cannot open it, and nothing appears next to the target."""
    from device.update.asuser import RuntimeUserExporter
    from device.update.usb import import_from_stick

    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    usage_store_with_one_circle(private / "secret.sqlite")._db.close()
    before = sorted(p.name for p in private.iterdir())
    digest = (private / "secret.sqlite").read_bytes()
    (box_data / "usage.sqlite").symlink_to(private / "secret.sqlite")
    stick = tmp_path / "stick"
    stick.mkdir()
    exporter = RuntimeUserExporter(box_data, "box7", ids=(RUNTIME_UID, RUNTIME_UID))
    report = import_from_stick(stick, make_box(box_data, Keys()), "box7", exporter)
    assert report["usage_export"]["verified"] is False and "uid 940" in report["usage_export"]["error"]
    assert sorted(p.name for p in private.iterdir()) == before
    assert (private / "secret.sqlite").read_bytes() == digest
