"""The USB stick flow: every bundle on the stick, then the report and usage export back onto it.

The stick is mounted read-only while bundles are read; `writable` (a context manager, a remount
on the box) opens it for writing only for the short field-data write at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from device.update import messages as M
from device.update.box import Box, Result
from device.update.field_export import UsageExporter, export_usage, open_stick_dir, write_report
from device.update.installer import apply_bundle, finish_pending
from device.update.safefs import open_dir, open_dir_at
from device.update.state import load_state

WAIT_POLL_S = 15.0
WAIT_MAX_S = 6 * 3600.0  # longer than any circle; after that the next insert or boot finishes


def find_bundles(stick: Path) -> list[Path]:
    """*.cbx at the top of the stick or in updates/, in natural order (app-9 before app-10);
    hidden files (macOS ._ copies) are skipped. Listed without following symlinks: an
    `updates` that is a symlink is not looked into; a bundle that is one is listed, and
    refused by name when it is opened."""
    found: list[Path] = []
    top = open_dir(Path(stick))
    try:
        folders = [(Path(stick), top)]
        with contextlib.suppress(OSError):
            folders.append((Path(stick) / "updates", open_dir_at(top, "updates")))
        for path, fd in folders:
            with os.scandir(fd) as entries:
                found += [
                    path / e.name
                    for e in entries
                    if e.name.endswith(".cbx") and not e.name.startswith(".")
                    and (e.is_symlink() or e.is_file(follow_symlinks=False))
                ]
    finally:
        for _path, fd in folders:
            os.close(fd)

    def natural(path: Path) -> list[object]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]

    return sorted(found, key=natural)


def remount(stick: Path, writable: bool) -> None:
    options = "remount,rw,nosuid,nodev,noexec" if writable else "remount,ro,nosuid,nodev,noexec"
    subprocess.run(["mount", "-o", options, str(stick)], check=True, timeout=30)


@contextlib.contextmanager
def remounted_rw(stick: Path):
    """The stick writable for the duration, then read-only again (and synced) whatever happens."""
    remount(stick, True)
    try:
        yield
    finally:
        subprocess.run(["sync"], check=False, timeout=60)
        remount(stick, False)


def import_from_stick(
    stick: Path,
    box: Box,
    box_id: str,
    usage: UsageExporter | None = None,
    writable: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
) -> dict[str, object]:
    """Install every bundle on the stick, then write report + usage export to it; the report."""
    narr = box.narrator()
    before = load_state(box.root).versions()
    bundles = find_bundles(Path(stick))
    results: list[Result] = []
    # Finish what an earlier run left: an interrupted switch, or a release staged during a
    # circle that is over now. Their results go in this report too.
    results += finish_pending(box, narr)
    if not bundles:
        narr.say(M.NO_UPDATE)
    for bundle in bundles:
        results.append(apply_bundle(bundle, box, narr, beneath=Path(stick)))
    report: dict[str, object] = {
        "box_id": box_id,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions_before": before,
        "versions_after": load_state(box.root).versions(),
        "results": [r.to_dict() for r in results],
        "result": "ok" if all(r.ok for r in results) else "refused",
        "code": results[-1].code if results else M.NO_UPDATE,
    }
    saved = False
    try:
        with writable():
            dest = open_stick_dir(Path(stick), box_id)
            try:
                if usage is not None:
                    outcome = export_usage(usage, dest, Path(box.root) / "update")
                    report["usage_export"] = outcome.__dict__
                write_report(dest, report)
            finally:
                os.close(dest)
            saved = usage is None or bool(report["usage_export"]["verified"])  # type: ignore[index]
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        report["write_error"] = str(exc)[:300]
    narr.say(M.DATA_SAVED if saved else M.DATA_NOT_SAVED)
    narr.say(M.REMOVE_STICK)
    return report


def wait_then_finish(box: Box, poll_s: float = WAIT_POLL_S, max_s: float = WAIT_MAX_S) -> list[Result]:
    """After staging: wait quietly (a circle is on) until it ends, then switch."""
    start = box.seams.clock()
    while box.seams.circle_running():
        if box.seams.clock() - start > max_s:
            return []
        box.seams.sleep(poll_s)
    return finish_pending(box)


def unmount(stick: Path) -> None:
    """Let the stick go before a long wait (lazy: works even if it was already pulled)."""
    subprocess.run(["umount", "--lazy", str(stick)], check=False, timeout=30)
