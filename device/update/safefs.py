"""File access for the root updater in places it does not fully trust.

Root never follows a symbolic link or a path that a service could have swapped: files on a
stick, in the upload inbox or in the data folder are opened one component at a time with
O_NOFOLLOW relative to a directory descriptor already opened, and root's own folders (the
update state, staging, releases, `current/`) are used only after `check_private_dir` confirmed
that no other user can write to them or rename them (see docs/security.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A box's name on a stick: a single plain folder name (the review used `../../../x`).
BOX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class UnsafePath(OSError):
    """A path root would have to trust is a symbolic link, or writable by someone else."""


def check_box_id(name: str) -> str:
    """A box name that is one plain folder name, or ValueError saying what is wrong."""
    if not BOX_ID.match(name):
        raise ValueError(
            f"box name {name[:40]!r} cannot be a folder name on the stick "
            "(letters, digits, '.', '_', '-'; up to 63 characters; not starting with '.')"
        )
    return name


def _owners() -> set[int]:
    return {0, os.geteuid()}


def _writable_by_others(st: os.stat_result) -> bool:
    return bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def check_ancestors(path: Path) -> None:
    """Every directory from / down to `path` is root's (or ours), and none can have its
    entries renamed by another user: not group/other-writable, or sticky (like /tmp)."""
    path = Path(os.path.abspath(path))
    for directory in [*reversed(path.parents), path]:
        st = os.lstat(directory)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(f"{directory} is a symbolic link; the updater does not follow it")
        if st.st_uid not in _owners():
            raise UnsafePath(f"{directory} belongs to uid {st.st_uid}, not to root")
        if _writable_by_others(st) and not st.st_mode & stat.S_ISVTX:
            raise UnsafePath(
                f"{directory} is writable by other users without the sticky bit "
                f"(mode {stat.S_IMODE(st.st_mode):o}): they could swap what the updater reads"
            )


def check_private_dir(path: Path, create: bool = True) -> None:
    """`path` is a real directory of root's (or ours) that nobody else can write, below
    ancestors that pass `check_ancestors`; created 0755 when missing."""
    path = Path(path)
    check_ancestors(path.parent)
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o755)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{path} is not a directory (a symbolic link?); the updater refuses to use it")
    if st.st_uid not in _owners():
        raise UnsafePath(f"{path} belongs to uid {st.st_uid}, not to root: someone planted it")
    if _writable_by_others(st):
        raise UnsafePath(f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})")


def open_dir_at(parent_fd: int, name: str, create: bool = False, mode: int = 0o755) -> int:
    """A directory fd for `name` inside `parent_fd`, never through a symbolic link."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=parent_fd)
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink, or a file where a folder is due
            raise UnsafePath(f"{name} is a symbolic link or not a folder; refused") from None
        raise


def open_dir(path: Path) -> int:
    """A directory fd for `path` itself (its last component must not be a symbolic link)."""
    try:
        return os.open(path, DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{path} is a symbolic link or not a folder; refused") from None
        raise


@contextlib.contextmanager
def dir_fd(path: Path) -> Iterator[int]:
    fd = open_dir(path)
    try:
        yield fd
    finally:
        os.close(fd)


def open_beneath(top: Path, relative: Path | str, flags: int = os.O_RDONLY) -> int:
    """Open `top/relative` following no symbolic link anywhere below `top` (nor `top` itself)."""
    parts = Path(relative).parts
    if not parts or any(p in ("", ".", "..") or "/" in p for p in parts):
        raise UnsafePath(f"{relative} is not a plain path below {top}")
    fd = open_dir(top)
    try:
        for part in parts[:-1]:
            child = open_dir_at(fd, part)
            os.close(fd)
            fd = child
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def read_small_at(parent_fd: int, name: str, limit: int) -> bytes:
    """A small regular file inside `parent_fd`, not through a symbolic link; at most `limit`."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{name} is not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def write_file_at(parent_fd: int, name: str, data: bytes, mode: int = 0o644) -> None:
    """Atomic write of `name` inside `parent_fd`: a fresh temp file (O_EXCL, O_NOFOLLOW),
    fsync, rename over `name`, fsync the folder. A symlink planted at `name` is replaced,
    never written through."""
    tmp = f".{name}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=parent_fd)
        raise
    os.fsync(parent_fd)


def exists_at(parent_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
