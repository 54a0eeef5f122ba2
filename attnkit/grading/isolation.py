"""How a grading worker is kept from the rest of the machine: limits, namespaces, a read-only world.

`isolate(plan, uid, home)` turns a freshly forked worker into one that may run student code, as the
zygote planned it (`Plan`, with the strongest `Isolation` the machine allows): private mount and
network namespaces (entered as root, or as an ordinary user inside an unprivileged user namespace,
which also gets a pid namespace), the whole file system read-only, a private /tmp, the submissions,
the output and the grader's folder hidden, the instructor's home and /run emptied, then resource
limits, no_new_privs and no privileges (a job slot's uid, or no capabilities). `attempt_escapes`
runs inside a probe worker isolated the same way and reports what student code could still reach.
sandbox.py forks the workers; this module only confines them. Linux only (prctl, mount, unshare).
"""

from __future__ import annotations

import ctypes
import enum
import errno
import os
import pwd
import resource
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from attnkit.grading.contract import EXIT_INTERNAL

__all__ = ["Limits", "Isolation", "Plan", "isolate", "attempt_escapes", "needed_paths", "private_folders",
           "prctl", "vmsize", "listing", "PR_SET_CHILD_SUBREAPER", "PR_SET_NO_NEW_PRIVS"]

PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP = 36, 38, 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CLONE_NEWNS, _CLONE_NEWNET, _CLONE_NEWPID, _CLONE_NEWUSER = 0x00020000, 0x40000000, 0x20000000, 0x10000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)


@dataclass(frozen=True)
class Limits:
    """Per-submission limits (pipeline.py owns the defaults of the first three and passes them on)."""

    timeout: float  # wall-clock seconds for one notebook: its cells and every check
    memory_mb: int  # address space a worker may add to the pre-warmed process's own
    output_kb: int  # captured stdout + stderr, and the largest file a worker may write
    nproc: int = 64  # processes a worker may add (per job slot uid, or inside its user namespace)
    tmp_mb: int = 64  # size of the private /tmp (root with namespaces only)
    threads: int = 1  # torch threads per worker


class Isolation(enum.Enum):
    """How a worker is kept from the rest of the machine, strongest first (the zygote picks and measures)."""

    ROOT_NAMESPACES = "root-namespaces"  # root: a uid per job slot, private mount and network namespaces
    USER_NAMESPACES = "user-namespaces"  # an ordinary user: the same namespaces inside a user namespace
    ROOT_UIDS = "root-uids"  # root where namespaces are refused: a uid per job slot, file permissions only
    NONE = "none"  # neither: student code runs as the grader's user (the pipeline guards the files)

    @property
    def namespaces(self) -> bool:
        return self in (Isolation.ROOT_NAMESPACES, Isolation.USER_NAMESPACES)

    @property
    def pid_namespace(self) -> bool:
        """Only where student code runs under the grader's own uid: a uid per job slot already keeps root's
        workers from the grader's processes (and a second fork per notebook costs ~8 ms)."""
        return self is Isolation.USER_NAMESPACES

    @property
    def drops_uid(self) -> bool:
        return self in (Isolation.ROOT_NAMESPACES, Isolation.ROOT_UIDS)


@dataclass
class Plan:
    """What `isolate` does to a fresh worker; the same for the probe and for every job."""

    isolation: Isolation
    hide: list[str]  # folders made empty and unreadable: SUBMISSIONS, OUT, the grader's working folder
    needed: list[str]  # folders the worker must still read: the Python installation, attnkit
    private: list[str]  # folders emptied but for `needed`: the instructor's home, /run
    limits: Limits
    processes: int = 0  # the grader's user's processes at start (RLIMIT_NPROC counts them on old kernels)


_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> bool:
    return _libc.prctl(option, value, 0, 0, 0) == 0


def vmsize() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def isolate(plan: Plan, uid: int | None, home: Path) -> Path:
    """Put this process where student code may run, as `plan` says; return its home folder.

    In a user namespace the process forks once more: the child (pid 1 of a fresh pid namespace, so that
    it cannot see or signal the grader, and every process it starts dies with it) returns; this process
    waits and ends as the child did.
    """
    if plan.isolation.namespaces:
        _unshare(user=plan.isolation is Isolation.USER_NAMESPACES, pid=plan.isolation.pid_namespace)
        _private_filesystem(plan)
    if plan.isolation.pid_namespace:
        _become_pid_one()
        try:
            _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)  # only this namespace's pids
        except OSError:  # a /proc that is partly covered (some containers): keep it, read-only
            _read_only("/proc")
    if plan.isolation.namespaces:
        home = Path("/tmp/home")
        home.mkdir(mode=0o700)
        if uid is not None:
            os.chown(home, uid, uid)
    os.chdir(home)
    if plan.isolation is not Isolation.NONE:  # a job slot's own uid starts at zero processes
        _set_nproc(plan.limits.nproc + (0 if uid is not None else plan.processes))
    _set_limits(plan.limits)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    elif plan.isolation is Isolation.USER_NAMESPACES:
        _drop_capabilities()
    return home


def _unshare(*, user: bool, pid: bool) -> None:
    """New mount and network namespaces; without root, in a user namespace mapping our own ids, and a
    pid namespace for the children."""
    uid, gid = os.getuid(), os.getgid()
    flags = _CLONE_NEWNS | _CLONE_NEWNET | (_CLONE_NEWUSER if user else 0) | (_CLONE_NEWPID if pid else 0)
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    if user:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


def _become_pid_one() -> None:
    """Fork into the new pid namespace; the parent waits for the child and ends the same way."""
    pid = os.fork()
    if pid == 0:
        return
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
        os.kill(os.getpid(), number)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else EXIT_INTERNAL)


def _drop_capabilities() -> None:
    """Give up the capabilities a user namespace grants its creator (mount, and more), for good."""
    for cap in range(64):  # the bounding set: what an exec could ever give back
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable x 2 words: all zero
    if _libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _cap(kind: int, value: int) -> None:
    _, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value if hard == resource.RLIM_INFINITY else hard))


def _set_limits(limits: Limits) -> None:
    _cap(resource.RLIMIT_AS, vmsize() + limits.memory_mb * 2**20)
    _cap(resource.RLIMIT_FSIZE, limits.output_kb * 1024)
    _cap(resource.RLIMIT_CORE, 0)
    _cap(resource.RLIMIT_CPU, int(limits.timeout * max(1, limits.threads)) + 10)
    _cap(resource.RLIMIT_NOFILE, 1024)


def _set_nproc(value: int) -> None:
    """RLIMIT_NPROC counts the processes of the real uid: per user namespace since Linux 5.14, over the
    whole machine before (so the grader's own user starts from what it already runs)."""
    _cap(resource.RLIMIT_NPROC, value)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def needed_paths() -> list[str]:
    """Folders a worker must be able to read: the Python installation, sys.path and attnkit itself."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(__file__).resolve().parents[2])}
    paths |= {p for p in sys.path if p and os.path.isabs(p)}
    return sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)})


def private_folders() -> list[str]:
    """Folders student code must not read: the instructor's home (SSH keys, mail, other courses) and
    /run (sockets such as a user's D-Bus session or Docker's, which a read-only mount does not stop)."""
    homes = {os.environ.get("HOME", ""), _home_of(os.getuid()), _home_of(os.environ.get("SUDO_UID"))}
    folders = {os.path.realpath(h) for h in homes if h and os.path.isdir(h)} | {"/run"}
    return sorted(f for f in folders if f != "/" and os.path.isdir(f))


def _home_of(uid: int | str | None) -> str:
    try:
        return pwd.getpwuid(int(uid)).pw_dir if uid is not None else ""
    except (KeyError, ValueError):
        return ""


def _private_filesystem(plan: Plan) -> None:
    """Everything read-only, a private /tmp, private folders emptied, hidden folders unreadable."""
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("/", "/", None, _MS_BIND | _MS_REC)
    # The instructor's home and /run, and any folder an unprivileged uid cannot enter on its way to the
    # Python installation (e.g. /root, 0700): an empty tmpfs, into which only the needed folders are bound.
    for folder in sorted(set(plan.private) | set(_blocked_ancestors(plan.needed))):
        _cover(folder, plan.needed, "size=64k,mode=0755")
    with open("/proc/self/mountinfo") as f:
        points = sorted({line.split()[4].replace("\\040", " ") for line in f}, key=len)
    for point in points:
        if point != "/proc" and not point.startswith("/proc/"):
            try:
                _read_only(point)
            except OSError:
                pass  # measured from inside the worker (writable_mounts), and reported
    for tmp in ("/tmp", "/var/tmp", "/dev/shm"):
        if os.path.isdir(tmp):
            # The course may itself live in a temporary folder (a clone in /tmp, an editable install):
            # keep those folders, read-only, inside the fresh private /tmp.
            for kept in _cover(tmp, plan.needed, f"size={plan.limits.tmp_mb}m,mode=1777"):
                _read_only(kept)
    for path in plan.hide:  # other students' work and the grader's output: an empty, unreadable folder
        if os.path.isdir(path):
            _mount("tmpfs", path, "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV, "size=4k,mode=000")


def _cover(folder: str, needed: list[str], options: str) -> list[str]:
    """Mount an empty tmpfs over `folder`, then bind back the `needed` folders inside it; return those."""
    inside = [p for p in needed if p.startswith(folder.rstrip("/") + "/")]
    keep = [p for p in inside if not any(p.startswith(q + "/") for q in inside)]  # outermost only
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    _mount("tmpfs", folder, "tmpfs", _MS_NOSUID | _MS_NODEV, options)
    for path, fd in fds.items():
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)
    return keep


def _read_only(point: str) -> None:
    """Remount a mount point read-only, keeping the flags it has (a user namespace may not clear them)."""
    have = os.statvfs(point).f_flag
    flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID
    flags |= sum(ms for st, ms in ((os.ST_NODEV, _MS_NODEV), (os.ST_NOEXEC, _MS_NOEXEC)) if have & st)
    if not (point == "/dev" or point.startswith("/dev/")):
        flags |= _MS_NODEV
    _mount(None, point, None, flags)


def _blocked_ancestors(paths: list[str]) -> list[str]:
    """The first folder above each path that other users may not enter (e.g. /root)."""
    blocked = set()
    for path in paths:
        parts = Path(path).parts
        for depth in range(1, len(parts) - 1):
            ancestor = os.path.join(*parts[:depth + 1])
            if not os.stat(ancestor).st_mode & 0o001:
                blocked.add(ancestor)
                break
    return sorted(blocked)


def _read_only_at(point: str) -> bool:
    """Is the mount at `point` read-only? (True for a mount covered by a later one: it cannot be reached.)"""
    try:
        return bool(os.statvfs(point).f_flag & os.ST_RDONLY)
    except OSError:
        return True


def listing(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def attempt_escapes(samples: dict, outside: dict[str, list[str]], plan: Plan, port: int, grader: int) -> dict:
    """From inside an isolated probe worker: what student code can still reach. True = protected."""
    def refused(action) -> bool:
        try:
            action()
        except OSError:
            return True
        return False

    def write(path: str) -> None:  # opened for writing, nothing written: the file stays as it was
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))

    def create(folder: str) -> None:  # the kernel's answer, without leaving a trace in a student's folder
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(folder)

    def connect() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass

    found: dict = {}
    for what, path in samples.items():  # "submission", "output", "course": a file or folder of each
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        found[f"{what}_read_only"] = refused(lambda f=folder: create(f)) and (
            os.path.isdir(path) or refused(lambda p=path: write(p)))
        found[f"{what}_hidden"] = not os.path.exists(path)
    kept = {Path(p).relative_to(f).parts[0] for f in plan.private for p in plan.needed if p.startswith(f + "/")}
    found["private_visible"] = sorted(os.path.join(f, n) for f in plan.private
                                      for n in set(listing(f)) & set(outside.get(f, [])) if n not in kept)[:5]
    found["network_blocked"] = refused(connect)
    found["grader_unreachable"] = refused(lambda: os.kill(grader, 0))
    with open("/proc/self/status") as f:
        found["capabilities"] = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), -1)
    with open("/proc/self/mountinfo") as f:
        points = sorted({line.split()[4].replace("\\040", " ") for line in f})
    writable = [p for p in points if plan.isolation.namespaces and not _read_only_at(p)]
    scratch = ("/proc", "/tmp", "/var/tmp", "/dev/shm")
    found["writable_mounts"] = [p for p in writable
                                if not any(p == s or p.startswith(s + "/") for s in scratch)][:5]
    return found
