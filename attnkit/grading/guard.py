"""Keep what student code could destroy where the sandbox cannot hide it, and put it back.

Used when the measured sandbox leaves the submissions, the output folder or the course writable
(no namespaces: a kernel that refuses them, or not Linux). Before the first notebook runs, the grader
records every file and folder under the watched paths and keeps a copy of each file's bytes in its
own memory; after each notebook it compares, restores whatever changed or went missing, removes what
was added, and returns the paths, so that the notebook that was running can be named.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Guard", "MAX_BYTES"]

MAX_BYTES = 2 * 2**30  # copies kept in memory at most; larger files are recorded but not restorable


@dataclass(frozen=True)
class _Entry:
    """What a path was: its kind and whatever a change to it would change."""

    kind: str  # "file", "dir", "link" or "other"
    mode: int
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0  # set by the kernel on every write, chmod or rename: utime() cannot hide a change
    inode: int = 0
    target: str = ""  # a link's target


def _entry(path: str) -> _Entry | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISDIR(info.st_mode):
        return _Entry("dir", mode)  # its times change with its children, which are compared themselves
    if stat.S_ISLNK(info.st_mode):
        return _Entry("link", mode, target=os.readlink(path))
    kind = "file" if stat.S_ISREG(info.st_mode) else "other"
    return _Entry(kind, mode, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


class Guard:
    """A record of `roots` (folders or files) and a copy of their bytes; `check()` restores them."""

    def __init__(self, roots: list[Path], *, max_bytes: int = MAX_BYTES):
        self.roots = [os.path.abspath(r) for r in roots if os.path.lexists(r)]
        self.record = self._scan()
        self.copies: dict[str, bytes] = {}
        self.too_big: list[str] = []
        self.unrestored: list[str] = []
        kept = 0
        for path, entry in self.record.items():
            if entry.kind != "file":
                continue
            if kept + entry.size > max_bytes:
                self.too_big.append(path)
                continue
            try:
                with open(path, "rb") as f:
                    self.copies[path] = f.read()
                kept += entry.size
            except OSError:
                self.too_big.append(path)  # unreadable to us: nothing to restore it from

    def _scan(self) -> dict[str, _Entry]:
        found: dict[str, _Entry] = {}
        for root in self.roots:
            entry = _entry(root)
            if entry is None:
                continue
            found[root] = entry
            if entry.kind != "dir":
                continue
            for folder, dirs, files in os.walk(root):
                for name in dirs + files:
                    path = os.path.join(folder, name)
                    sub = _entry(path)
                    if sub is not None:
                        found[path] = sub
        return found

    def check(self) -> list[str]:
        """Restore every watched path that changed since the record; return those paths, sorted.

        What cannot be put back (a copy too large to keep, a folder we may not write) is added to
        `unrestored`; grading goes on.
        """
        now = self._scan()
        changed = sorted(p for p in set(now) | set(self.record) if now.get(p) != self.record.get(p))
        if not changed:
            return []
        dirs = sorted((p for p, e in self.record.items() if e.kind == "dir"), key=len)
        for path in dirs:  # back, and writable while their files come back; their own modes at the end
            self._attempt(path, _make_writable_folder)
        added = set(now) - set(self.record)
        for path in sorted(p for p in added if os.path.dirname(p) not in added):  # added: removed, whole
            self._attempt(path, _remove)
        for path in changed:
            entry = self.record.get(path)
            if entry is not None and entry.kind in ("file", "link") and now.get(path) != entry:
                self._attempt(path, lambda p, e=entry: self._restore(p, e))
        for path in reversed(dirs):
            self._attempt(path, lambda p: _chmod_if_needed(p, self.record[p].mode))
        self.record = self._scan()
        return changed

    def _attempt(self, path: str, action) -> None:
        try:
            action(path)
        except OSError as err:
            self.unrestored.append(f"{path} ({err.strerror or err})")

    def _restore(self, path: str, entry: _Entry) -> None:
        if os.path.lexists(path):
            _remove(path)
        if entry.kind == "link":
            os.symlink(entry.target, path)
            return
        data = self.copies.get(path)
        if data is None:
            raise OSError(f"no copy was kept ({'too large' if path in self.too_big else 'unreadable'})")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, entry.mode)
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))


def _make_writable_folder(path: str) -> None:
    if not os.path.isdir(path) or os.path.islink(path):
        _remove(path)
        os.makedirs(path, exist_ok=True)
    _chmod_if_needed(path, os.stat(path).st_mode | 0o700)


def _chmod_if_needed(path: str, mode: int) -> None:
    if stat.S_IMODE(os.stat(path).st_mode) != stat.S_IMODE(mode):
        os.chmod(path, stat.S_IMODE(mode))


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            for folder, dirs, _ in os.walk(path):  # a folder made unwritable must not keep its files
                for name in dirs:
                    os.chmod(os.path.join(folder, name), 0o700)
            os.chmod(path, 0o700)
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
