"""Run each submission in its own forked worker with a time limit, memory and output caps, and cleanup.

A *zygote* process imports torch, numpy, matplotlib, ipywidgets and attnkit once, then forks one
worker per submission (a fork costs milliseconds; a fresh Jupyter kernel costs seconds). Each worker:

- starts a new session (setsid), so its whole process group can be killed;
- gets a wall-clock deadline (the zygote kills it, and everything it started, when it passes);
- caps its address space (RLIMIT_AS, relative to the pre-warmed size), the size of any file it writes
  (RLIMIT_FSIZE, with SIGXFSZ ignored, so its captured stdout/stderr stays small), CPU time, processes
  and core dumps, and sets no_new_privs (setuid programs do not elevate);
- is isolated as strongly as the machine allows (`Isolation`), with or without root:
  private mount and network namespaces (the whole file system read-only, a small private /tmp;
  the submissions, the output folder and the grader's working folder hidden; the instructor's home
  and /run emptied; no network), entered as root (then the worker drops to a dedicated unprivileged
  uid per job slot) or, for an ordinary user, inside an unprivileged user namespace (then it also
  gets its own pid namespace, since it keeps the grader's uid, and drops every capability). As root
  where namespaces are refused, the per-slot uid alone; with neither, nothing (the grader then guards
  the files itself: guard.py).

At start the zygote isolates a probe worker exactly like a job and has it try what student code must
not do (write a submission, list the instructor's home, connect to the grader, signal it): the
summary reports those measurements, not assumptions. The zygote is also a child subreaper: orphans of
a worker are re-parented to it and killed when the job ends. The worker reads its job before any of
this and writes its results to a directory it was given as an open file descriptor; see worker.py.
The grader side is `Sandbox`.
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import gc
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from attnkit.grading import contract
from attnkit.grading.contract import EXIT_INTERNAL
from attnkit.grading.isolation import (
    PR_SET_CHILD_SUBREAPER,
    PR_SET_NO_NEW_PRIVS,
    Isolation,
    Limits,
    Plan,
    attempt_escapes,
    isolate,
    listing,
    needed_paths,
    prctl,
    private_folders,
    vmsize,
)

__all__ = ["Ending", "JobEnd", "Sandbox", "SandboxError", "serve"]

_UID_BASE = 61000  # first uid tried for the job slots; must not belong to anyone (checked)


class Ending(str, enum.Enum):
    """How a worker process ended, as the zygote saw it."""

    EXITED = "exited"
    SIGNALED = "signaled"
    TIMEOUT = "timeout"  # killed by the zygote at the deadline


@dataclass
class JobEnd:
    """How a worker ended, as the zygote saw it."""

    job: int
    status: Ending
    code: int | None = None  # exit code, when status is "exited"
    signal: int | None = None  # signal number, when "signaled" (or the kill after a timeout)
    elapsed: float = 0.0
    leftovers: int = 0  # processes the job left behind, killed after it


class SandboxError(RuntimeError):
    """The zygote could not start or died; the message includes its log."""


# ---------------------------------------------------------------------------------------------------
# Grader side
# ---------------------------------------------------------------------------------------------------


class Sandbox:
    """The grader's handle on the zygote: start it, run jobs in slots, wait for them to end."""

    def __init__(self, limits: Limits, work_dir: Path, *, warm_up: str, hide: list[Path] = (),
                 samples: dict[str, Path] | None = None, jobs: int = 1):
        self.limits, self.work_dir, self.jobs, self.warm_up = limits, Path(work_dir), jobs, warm_up
        self.hide = [str(Path(p).resolve()) for p in hide]
        # One existing file of each kind that student code must not change, for the probe to try.
        self.samples = {what: str(Path(p).resolve()) for what, p in (samples or {}).items()}
        self.measures: dict = {}
        self._proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        """Start the zygote without waiting for it (it takes a few seconds to import torch & co.)."""
        log = open(self.work_dir / "zygote.log", "wb")
        config = {"limits": asdict(self.limits), "hide": self.hide, "samples": self.samples, "jobs": self.jobs,
                  "warm_up": self.warm_up}
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONHASHSEED="0", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        self._proc = subprocess.Popen([sys.executable, "-c", "from attnkit.grading.sandbox import serve; serve()",
                                       json.dumps(config)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                      cwd=self.work_dir)
        log.close()

    def ready(self) -> dict:
        """Wait until the zygote has imported everything; return its sandbox measures."""
        if not self.measures:
            self.measures = self._read()["measures"]
        return self.measures

    def preload(self, cases: dict[str, Path]) -> None:
        """Have the zygote load each notebook's cases file once (notebook -> path), before the jobs."""
        self._send({"op": "cases", "files": {notebook: str(path) for notebook, path in cases.items()}})

    def submit(self, job: int, job_dir: Path, slot: int) -> None:
        """Start job `job` (its files are in `job_dir`) in slot `slot` (0 .. jobs - 1)."""
        self._send({"op": "run", "job": job, "dir": str(job_dir), "slot": slot})

    def wait(self) -> JobEnd:
        """Block until some job ends."""
        end = self._read()
        return JobEnd(**{**end, "status": Ending(end["status"])})

    def close(self) -> None:
        """Stop the zygote; it kills whatever is still running."""
        if self._proc is None:
            return
        try:
            self._proc.stdin.close()
            self._proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def _send(self, msg: dict) -> None:
        try:
            self._proc.stdin.write((json.dumps(msg) + "\n").encode())
            self._proc.stdin.flush()
        except OSError as err:
            raise SandboxError(f"the grading zygote is gone ({err}).{self._log_tail()}") from None

    def _read(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            raise SandboxError(f"the grading zygote exited (code {code}).{self._log_tail()}")
        msg = json.loads(line)
        if "error" in msg:
            raise SandboxError(f"the grading zygote failed: {msg['error']}")
        return msg

    def _log_tail(self) -> str:
        try:
            text = (self.work_dir / "zygote.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""
        return f" Its log ends with:\n{text}" if text.strip() else ""


# ---------------------------------------------------------------------------------------------------
# Zygote side: `python -c "from attnkit.grading.sandbox import serve; serve()" CONFIG`
# ---------------------------------------------------------------------------------------------------

class _Zygote:
    def __init__(self, config: dict):
        self.limits = Limits(**config["limits"])
        self.hide = config["hide"]
        self.samples = config.get("samples", {})
        self.jobs = config["jobs"]
        self.running: dict[int, dict] = {}  # pid -> job info
        self.cases: dict[str, dict] = {}  # notebook -> exercise id -> case inputs (load_cases)
        self.exited: dict[int, int] = {}  # pid -> wait status, for workers reaped early
        self.me = os.getpid()

    # -- capabilities -------------------------------------------------------------------------------

    def probe(self, warm_problems: list[str]) -> dict:
        """Choose the strongest isolation this machine allows, then measure it from inside a worker."""
        # ATTNKIT_SANDBOX_NO_ROOT=1: behave as without root; ATTNKIT_SANDBOX_NO_NAMESPACES=1: as if the
        # kernel refused namespaces (to see, and test, the weaker sandboxes).
        root = os.geteuid() == 0 and not os.environ.get("ATTNKIT_SANDBOX_NO_ROOT")
        allow_namespaces = not os.environ.get("ATTNKIT_SANDBOX_NO_NAMESPACES")
        self.uids = self._free_uids() if root else []
        self.scratch = Path(tempfile.mkdtemp(prefix="attnkit-probe-"))  # the probes' working folder
        problems = list(warm_problems)
        mine = sum(1 for *_, owner in _procs(with_uid=True) if owner == os.getuid())
        self.plan = Plan(Isolation.NONE, self.hide, needed_paths(), private_folders(), self.limits, mine)
        refused = ""
        if root and self.uids:
            if allow_namespaces and self._in_child(self._try, Isolation.ROOT_NAMESPACES):
                self.plan.isolation = Isolation.ROOT_NAMESPACES
            elif self._in_child(self._try, Isolation.ROOT_UIDS):
                self.plan.isolation = Isolation.ROOT_UIDS
            else:
                problems.append("the Python installation is not readable by an unprivileged user and mount "
                                "namespaces are refused: student code runs as root")
        if self.plan.isolation is Isolation.NONE and allow_namespaces:
            refused = self._in_child(self._try, Isolation.USER_NAMESPACES, why=True)
            if not refused:
                self.plan.isolation = Isolation.USER_NAMESPACES
        elif not allow_namespaces:
            refused = "turned off by ATTNKIT_SANDBOX_NO_NAMESPACES"
        if self.plan.isolation not in (Isolation.ROOT_NAMESPACES, Isolation.ROOT_UIDS):
            self.uids = []
        self.subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1)
        inside = self.measure_inside()
        shutil.rmtree(self.scratch, ignore_errors=True)
        return {
            "isolation": self.plan.isolation.value,
            "namespaces_refused": refused,
            "root": root,
            "uids": self.uids,
            "namespaces": self.plan.isolation.namespaces,
            "subreaper": self.subreaper,
            "rlimit_as": True,
            "rlimit_fsize": True,
            "rlimit_nproc": self.plan.isolation is not Isolation.NONE,
            "no_new_privs": self._in_child(lambda: prctl(PR_SET_NO_NEW_PRIVS, 1)),
            "vmsize_mb": vmsize() // 2**20,
            "warm_problems": problems,
            "limits": asdict(self.limits),
            "inside": inside,
        }

    def _free_uids(self) -> list[int]:
        """uids no account and no process uses, locked for this run (two graders must not share them:
        each kills every process of its uids)."""
        busy = {uid for _, _, _, _, uid in _procs(with_uid=True)}
        for base in range(_UID_BASE, _UID_BASE + 20000, 1000):
            uids = list(range(base, base + self.jobs))
            if not all(_unused_uid(u) and u not in busy for u in uids):
                continue
            fd = os.open(f"/tmp/attnkit-grade-uids-{base}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.lock_fd = fd  # held until the zygote exits
            return uids
        return []

    def _try(self, isolation: Isolation) -> bool:
        """In a throw-away child: can a worker be isolated this way (and still read the installation)?"""
        plan = dataclasses.replace(self.plan, isolation=isolation)
        isolate(plan, self.uids[0] if isolation.drops_uid else None, self.scratch)
        return all(os.access(p, os.R_OK | os.X_OK) for p in plan.needed)

    def _in_child(self, fn, *args, why: bool = False):
        """Run fn(*args) in a fork; its truth (or, with `why`, "" on success and else the reason)."""
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                ok, reason = bool(fn(*args)), "it could not read the Python installation"
            except BaseException as err:
                ok, reason = False, f"{type(err).__name__}: {err}"
            os.write(write_end, reason.encode()[:2000])
            os._exit(0 if ok else 1)
        os.close(write_end)
        reason = _read_all(read_end).decode(errors="replace")
        _, status = os.waitpid(pid, 0)
        ok = os.waitstatus_to_exitcode(status) == 0
        if why:
            return "" if ok else (reason or f"the probe ended with status {status}")
        return ok

    def measure_inside(self) -> dict:
        """Isolate a child exactly as a worker, then try from inside what student code must not do."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        home = self.scratch
        outside = {folder: listing(folder) for folder in self.plan.private}
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_end)
                listener.close()
                isolate(self.plan, self.uids[0] if self.plan.isolation.drops_uid else None, home)
                found = attempt_escapes(self.samples, outside, self.plan, port, self.me)
                os.write(write_end, json.dumps(found).encode())
                code = 0
            except BaseException as err:
                os.write(write_end, json.dumps({"error": f"{type(err).__name__}: {err}"}).encode())
            finally:
                os._exit(code)
        os.close(write_end)
        data = _read_all(read_end)
        os.waitpid(pid, 0)
        listener.close()
        try:
            return json.loads(data)
        except ValueError:
            return {"error": "the probe worker returned nothing"}

    # -- the loop -----------------------------------------------------------------------------------

    def serve(self, proto_in: int, proto_out: int) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)
        self.wake = (wake_r, wake_w)
        self.proto_in, self.proto_out = proto_in, proto_out
        buffer = b""
        while True:
            deadlines = [job["deadline"] for job in self.running.values()]
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready, _, _ = select.select([proto_in, wake_r], [], [], wait)
            if wake_r in ready:
                os.read(wake_r, 4096)
            if proto_in in ready:
                data = os.read(proto_in, 65536)
                if not data:
                    break
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    message = json.loads(line)
                    if message.get("op") == "cases":
                        self.load_cases(message["files"])
                    else:
                        self.start_job(message)
            self.reap()
            now = time.monotonic()
            for pid, job in list(self.running.items()):
                if pid not in self.exited and now >= job["deadline"]:
                    job["timed_out"] = True
                    _killpg(pid)
                    _, status = os.waitpid(pid, 0)
                    self.exited[pid] = status
                if pid in self.exited:
                    self.finish(pid)
        for pid in list(self.running):  # the grader is gone: stop everything
            _killpg(pid)
            self.finish(pid)

    def send(self, msg: dict) -> None:
        data = (json.dumps(msg) + "\n").encode()
        while data:
            data = data[os.write(self.proto_out, data):]

    def load_cases(self, files: dict[str, str]) -> None:
        """Load each notebook's cases once, here: every worker forked afterwards has them in memory."""
        import torch

        for notebook, path in files.items():
            self.cases[notebook] = torch.load(path, weights_only=True)  # tensors and plain values only
        gc.collect()
        gc.freeze()

    def start_job(self, request: dict) -> None:
        slot = request["slot"]
        uid = self.uids[slot] if self.plan.isolation.drops_uid else None
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            code = EXIT_INTERNAL
            try:
                code = _worker_process(request, self.plan, uid, (self.proto_in, self.proto_out, *self.wake),
                                       self.cases)
            except BaseException:  # a grader bug: into the captured output (or the zygote's log)
                import traceback

                os.write(2, f"{contract.INTERNAL_ERROR}\n{traceback.format_exc()}".encode())
            finally:
                os._exit(code)
        self.running[pid] = {"job": request["job"], "dir": request["dir"], "slot": slot, "uid": uid, "start": start,
                             "deadline": start + self.limits.timeout, "timed_out": False}

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.running:
                self.exited[pid] = status

    def finish(self, pid: int) -> None:
        job = self.running.pop(pid)
        status = self.exited.pop(pid)
        leftovers = self.cleanup(pid, job["uid"]) + _count_in(Path(job["dir"]) / contract.OUT / contract.LEFTOVERS)
        end = {"job": job["job"], "elapsed": round(time.monotonic() - job["start"], 3), "leftovers": leftovers}
        if job["timed_out"]:
            end.update(status=Ending.TIMEOUT, signal=signal.SIGKILL)
        elif os.WIFSIGNALED(status):
            end.update(status=Ending.SIGNALED, signal=os.WTERMSIG(status))
        else:
            end.update(status=Ending.EXITED, code=os.waitstatus_to_exitcode(status))
        self.send(end)

    def cleanup(self, pgid: int, uid: int | None) -> int:
        """Kill everything the job started: its process group, its uid's processes (a job slot's uid),
        and orphans re-parented to the zygote (a subreaper) that are not running jobs. One scan of /proc
        when nothing is left, the usual case."""
        killed: set[int] = set()
        for _ in range(500):  # scan first, then kill: what is killed is counted (a zombie is not)
            self.reap()
            targets, by_uid = set(), False
            for pid, ppid, group, state, owner in _procs(with_uid=uid is not None):
                if state == "Z" or pid in self.running:
                    continue
                if group == pgid or ppid == self.me:
                    targets.add(pid)
                elif uid is not None and owner == uid:
                    targets.add(pid)
                    by_uid = True
            if not targets:
                break
            killed |= targets
            _killpg(pgid)
            if by_uid:
                self.kill_uid(uid)  # as that uid: kill(-1) also catches what it forks meanwhile
            for pid in targets:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.002)
        if uid is not None and not self.plan.isolation.namespaces:
            _sweep_tmp(uid)
        return len(killed)

    def kill_uid(self, uid: int) -> None:
        """Kill every process of `uid` at once: a helper that becomes `uid` calls kill(-1, SIGKILL)."""
        helper = os.fork()
        if helper == 0:
            try:
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(helper, 0)


def _procs(with_uid: bool = False):
    """(pid, ppid, pgid, state, uid) of every process; uid is the real one, read only if asked."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
            uid = -1
            if with_uid:
                with open(f"/proc/{name}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Uid:"):
                            uid = int(line.split()[1])
                            break
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        yield int(name), int(fields[1]), int(fields[2]), fields[0].decode(), uid


def _count_in(path: Path) -> int:
    """A small count a worker wrote (student code could fake it: it only informs the summary)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        text = os.read(fd, 16).decode(errors="replace").strip()
    finally:
        os.close(fd)
    return min(int(text), 10**6) if text.isdigit() else 0


def _unused_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return True
    return False


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _sweep_tmp(uid: int) -> None:
    """Without a private /tmp, delete what the job's uid left in the shared temporary folders."""
    import shutil

    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------------
# Inside the forked worker, before and around the student's code
# ---------------------------------------------------------------------------------------------------


def _worker_process(request: dict, plan: Plan, uid: int | None, zygote_fds: tuple[int, ...],
                    cases: dict[str, dict]) -> int:
    """Isolate this fresh fork, then hand over to worker.run. Returns the exit code."""
    os.setsid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past RLIMIT_FSIZE fail with EFBIG instead
    for fd in zygote_fds:
        os.close(fd)
    from attnkit.grading import worker

    # Everything the worker needs is read or opened now, as the grader's user, before any isolation.
    job_dir = Path(request["dir"])
    job = worker.load_job(job_dir, cases)
    out = job_dir / contract.OUT
    out.mkdir(mode=0o700)
    home = job_dir / contract.HOME
    home.mkdir(mode=0o700)
    if uid is not None:
        os.chown(out, uid, uid)
        os.chown(home, uid, uid)
    out_fd = os.open(out, os.O_DIRECTORY | os.O_RDONLY)
    output = os.open(contract.OUTPUT, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600, dir_fd=out_fd)
    if uid is not None:
        os.fchown(output, uid, uid)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.dup2(out_fd, 3)
    os.closerange(4, 65536)
    out_fd = 3

    home = isolate(plan, uid, home)
    os.environ.update(HOME=str(home), TMPDIR=str(home), USER="student", LOGNAME="student",
                      MPLCONFIGDIR=str(home / ".matplotlib"))
    sys.path[:0] = [str(home)]  # like a kernel started in the notebook's folder
    code = worker.run(job, out_fd, plan.limits)
    if plan.isolation.pid_namespace:  # the kernel kills them when this pid 1 ends: count them for the summary
        alive = sum(1 for pid, _, _, state, _ in _procs() if pid != 1 and state != "Z")
        fd = os.open(contract.LEFTOVERS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=out_fd)
        os.write(fd, str(alive).encode())
        os.close(fd)
    return code


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def _call(path: str) -> list[str]:
    """Call the warm-up function named "module:function" (handed in by the pipeline); its problems."""
    import importlib

    module, _, name = path.partition(":")
    return list(getattr(importlib.import_module(module), name)())


def serve() -> None:
    """Entry point of the zygote process (`python -c "...; serve()" CONFIG`)."""
    config = json.loads(sys.argv[1])
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)  # anything printed by an import goes to the log, not into the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the grader, which closes our stdin
    zygote = _Zygote(config)
    try:
        problems = _call(config["warm_up"])
        measures = zygote.probe(problems)
    except BaseException as err:
        os.write(proto_out, (json.dumps({"error": f"{type(err).__name__}: {err}"}) + "\n").encode())
        raise
    gc.collect()
    gc.freeze()  # forked workers then touch (and copy) fewer pages
    os.write(proto_out, (json.dumps({"ready": True, "measures": measures}) + "\n").encode())
    zygote.serve(proto_in, proto_out)

