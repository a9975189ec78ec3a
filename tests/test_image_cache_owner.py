"""The full image's check refuses a pre-rendered prompt cache the box's services cannot add to
(image/check_tree.py): the build renders as root, and a root-owned cache/prompts made the
admin page fail to make a course's announcements on the booted image."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "image"))

from check_tree import Checker  # noqa: E402


def image_root(tmp_path: Path, circlebox_uid: int, folder_mode: int) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(f"root:x:0:0::/root:/bin/sh\ncirclebox:x:{circlebox_uid}:940::/:/bin/false\n")
    for folder in ("cache", "cache/prompts", "cache/sets"):
        (tmp_path / "var/lib/circlebox" / folder).mkdir(parents=True)
        (tmp_path / "var/lib/circlebox" / folder).chmod(folder_mode)
    return tmp_path


def problems(root: Path) -> list[str]:
    checker = Checker(root, REPO)  # (it notes the missing manifest: not what is checked here)
    checker.problems.clear()
    checker.check_cache_owner(root / "var/lib/circlebox/cache")
    return checker.problems


def test_a_cache_of_the_runtimes_user_writable_by_its_group_passes(tmp_path):
    assert problems(image_root(tmp_path, os.getuid(), 0o2775)) == []


def test_a_cache_folder_of_another_owner_is_refused(tmp_path):
    found = problems(image_root(tmp_path, os.getuid() + 1, 0o2775))
    assert any(p.endswith("/var/lib/circlebox/cache/prompts") for p in found), found


def test_a_cache_folder_its_group_cannot_write_is_refused(tmp_path):
    found = problems(image_root(tmp_path, os.getuid(), 0o755))
    assert any(p.endswith("/var/lib/circlebox/cache/sets") for p in found), found
