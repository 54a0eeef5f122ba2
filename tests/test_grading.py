"""`attnkit grade` on a class of real submissions, built from solutions/ and exercises/ with nbformat.

One grading run (module fixture) covers every student; each test reads its rows. Messages are
compared with what the self-check itself says (`run_exercise(...).render()`), so the grader and the
students' `check()` cannot drift apart.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import textwrap
from pathlib import Path

import nbformat
import pytest

from attnkit.checks import exercises_for, get_exercise, run_exercise
from attnkit.grading import grade
from attnkit.grading.discover import released_notebooks

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = [n for n in released_notebooks() if (REPO / "solutions" / n).exists() and (REPO / "exercises" / n).exists()]
CH1 = "01_attention.ipynb"
TIMEOUT = 6.0  # per notebook; small, so that the runaway students cost little
SEED = 0
MARKERS = ("987.123", "987.456")  # `sleep` arguments of the processes a student leaves behind
SECRET = "attnkit-test-secret-key"  # in the grader's home folder, which student code must not read

pytestmark = pytest.mark.skipif(CH1 not in NOTEBOOKS, reason="solutions/ and exercises/01_attention.ipynb needed")


# --- building submissions -----------------------------------------------------------------------


def solution(name: str = CH1) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "solutions" / name, as_version=4)


def stubbed(name: str = CH1) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "exercises" / name, as_version=4)


def replace_exercise(nb: nbformat.NotebookNode, ex_id: str, source: str) -> nbformat.NotebookNode:
    """Replace the code cell that starts with `# Exercise <id>` by the student's version."""
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith(f"# Exercise {ex_id}"):
            cell.source = f"# Exercise {ex_id}\n" + textwrap.dedent(source).strip() + "\n"
            return nb
    raise LookupError(f"no code cell for exercise {ex_id}")


def insert_cell(nb: nbformat.NotebookNode, source: str, *, after_exercise: str | None = None) -> nbformat.NotebookNode:
    """Add a code cell after the imports (the first code cell), or after an exercise's check cell."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    where = code[0]
    if after_exercise is not None:
        where = next(i for i, c in enumerate(nb.cells)
                     if c.cell_type == "code" and c.source.lstrip().startswith(f"# Exercise {after_exercise}")) + 1
    nb.cells.insert(where + 1, nbformat.v4.new_code_cell(textwrap.dedent(source).strip() + "\n"))
    return nb


def save(folder: Path, name: str, nb: nbformat.NotebookNode) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


WRONG_SOFTMAX = """
def softmax(x):
    e = x.exp()  # no max subtraction: overflows on large scores
    return e / e.sum(dim=-1, keepdim=True)
"""
WRONG_SCORES = """
import math
def scaled_scores(query, key, scale=None):
    return query @ key.transpose(-2, -1) / query.shape[-1]  # d_k instead of sqrt(d_k)
"""
HARDCODED_SOFTMAX = """
import torch
from attnkit.checks import get_exercise
_public = [case.inputs["x"] for case in get_exercise("1.1").cases()]
def softmax(x):  # right on the public checks only
    if any(p.shape == x.shape and torch.equal(p, x) for p in _public):
        return torch.softmax(x, dim=-1)
    return torch.zeros_like(x)
"""
HANG_CELL = """
import time
while True:  # an infinite loop that even swallows the grader's soft interrupt
    try:
        time.sleep(0.05)
    except BaseException:
        pass
"""
PATCH_CELL = """
import numpy as np
import torch
import attnkit.checks.core as core
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *args, **k: torch.ones_like(a, dtype=torch.bool)
np.allclose = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
core.compare = lambda *a, **k: None
core.judge = lambda exercise, case, expected, ran: core.CaseResult(case, "passed")
"""


def vandal_cell(paths: dict[str, Path]) -> str:
    return f"""
import os, shutil, pathlib
for target in {[str(paths['victim']), str(paths['sentinel'])]!r}:
    for attempt in (lambda p: pathlib.Path(p).write_text("pwned"), os.remove, lambda p: os.chmod(p, 0o777)):
        try:
            attempt(target)
        except Exception as err:
            print("refused:", type(err).__name__)
for folder in {[str(paths['victim'].parent), str(paths['sentinel'].parent)]!r}:
    shutil.rmtree(folder, ignore_errors=True)
try:
    os.utime({str(paths['course'])!r}, (0, 0))
except Exception as err:
    print("refused:", type(err).__name__)
try:
    pathlib.Path({str(paths['planted'])!r}).write_text("print('pwned')")
except Exception as err:
    print("refused:", type(err).__name__)
"""


def snoop_cell(secret: Path) -> str:
    """Full marks for softmax only if the grader's home folder could not be read."""
    return f"""
import torch
try:
    LEAKED = {SECRET!r} in open({str(secret)!r}).read()
except OSError:
    LEAKED = False
print("leaked" if LEAKED else "refused")
def softmax(x):
    return torch.zeros_like(x) if LEAKED else torch.softmax(x, dim=-1)
"""


def network_cell(port: int) -> str:
    """Full marks for softmax only if a connection to the test's loopback listener failed."""
    return f"""
import socket, torch
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    REACHED = True
except OSError:
    REACHED = False
def softmax(x):
    return torch.zeros_like(x) if REACHED else torch.softmax(x, dim=-1)
"""


DAEMON_CELL = f"""
import os, subprocess
subprocess.Popen(["sleep", "{MARKERS[0]}"])
pid = os.fork()
if pid == 0:  # the classic double fork: the grandchild leaves the process group and is re-parented
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "{MARKERS[1]}"])
    os._exit(0)
os.waitpid(pid, 0)
"""


def build_class(subs: Path, out: Path, home: Path, port: int) -> dict[str, Path]:
    """Every kind of submission the grader must survive, one student each."""
    course = Path(get_exercise("1.1").reference.__code__.co_filename).parent / "__init__.py"
    paths = {"victim": subs / "correct" / CH1, "sentinel": out / "instructor-notes.txt", "course": course,
             "planted": course.parent / "zz_planted_by_student.py", "secret": home / ".ssh" / "id_rsa"}
    for name in NOTEBOOKS:
        save(subs / "correct", name, solution(name))
        save(subs / "blank", name, stubbed(name))
    save(subs / "wrong", CH1, replace_exercise(replace_exercise(solution(), "1.1", WRONG_SOFTMAX), "1.2", WRONG_SCORES))
    save(subs / "hardcoder", CH1, replace_exercise(solution(), "1.1", HARDCODED_SOFTMAX))
    save(subs / "loop", CH1, replace_exercise(solution(), "1.1", "def softmax(x):\n    while True:\n        pass"))
    save(subs / "hang", CH1, insert_cell(solution(), HANG_CELL))
    save(subs / "toploop", CH1, insert_cell(solution(), "while True:\n    pass"))
    nb = insert_cell(solution(), "import sys\nsys.exit(3)")
    save(subs / "exits", CH1, replace_exercise(nb, "1.4", """
        import sys
        def scaled_dot_product_attention(query, key, value, attn_mask=None):
            sys.exit(0)
    """))
    save(subs / "osexit_fn", CH1, replace_exercise(solution(), "1.2", """
        import os
        def scaled_scores(query, key, scale=None):
            os._exit(0)
    """))
    save(subs / "osexit_cell", CH1, insert_cell(solution(), "import os\nos._exit(3)", after_exercise="1.2"))
    save(subs / "segfault", CH1, replace_exercise(solution(), "1.3", """
        import ctypes
        def additive_scores(query, key, W_q, W_k, v_a):
            return ctypes.string_at(0)
    """))
    save(subs / "memory", CH1, replace_exercise(solution(), "1.1", """
        import torch
        def softmax(x):
            big = torch.ones(2**40, dtype=torch.uint8)  # 1 TiB
            return big
    """))
    nb = insert_cell(solution(), "print('x' * (8 * 2**20))  # 8 MiB at once")
    save(subs / "flood", CH1, replace_exercise(nb, "1.2", """
        def scaled_scores(query, key, scale=None):
            for i in range(10**6):
                print("debugging", i, "spam " * 40)
            return query @ key.transpose(-2, -1)
    """))
    zeros = "import torch\ndef softmax(x):\n    return torch.zeros_like(x)"
    nb = insert_cell(replace_exercise(solution(), "1.1", zeros), PATCH_CELL, after_exercise="1.1")
    save(subs / "patcher", CH1, replace_exercise(nb, "1.2", """
        import torch
        class Agreeable(torch.Tensor):
            def __eq__(self, other):
                return True
        def scaled_scores(query, key, scale=None):
            return torch.zeros(1).as_subclass(Agreeable)
    """))
    save(subs / "alwayseq", CH1, replace_exercise(solution(), "1.1", """
        class AlwaysEqual:
            def __eq__(self, other):
                return True
            def __array__(self, *args, **kwargs):
                raise TypeError("no")
        def softmax(x):
            return AlwaysEqual()
    """))
    save(subs / "vandal", CH1, insert_cell(solution(), vandal_cell(paths)))
    save(subs / "snoop", CH1, replace_exercise(solution(), "1.1", snoop_cell(paths["secret"])))
    save(subs / "netcall", CH1, replace_exercise(solution(), "1.1", network_cell(port)))
    save(subs / "daemon", CH1, insert_cell(solution(), DAEMON_CELL))
    (subs / "corrupt").mkdir()
    (subs / "corrupt" / CH1).write_text(nbformat.writes(solution())[:2000])
    (subs / "empty").mkdir()
    (subs / "empty" / CH1).write_bytes(b"")
    (subs / "old").mkdir()
    (subs / "old" / CH1).write_text(nbformat.writes(nbformat.convert(solution(), 3), version=3))
    nb = replace_exercise(solution(), "1.1", """
        import torch
        def my_softmax(x):
            return torch.softmax(x, dim=-1)
    """)
    nb = replace_exercise(nb, "1.2", """
        import math
        def my_scores(query, key, scale=None):
            return query @ key.transpose(-2, -1) * (scale if scale is not None else 1 / math.sqrt(query.shape[-1]))
        check("1.2", my_scores)
    """)
    save(subs / "renamed", CH1, nb)
    save(subs / "files", CH1, solution())
    save(subs / "files", "01_attention (1).ipynb", stubbed())
    save(subs / "files", "attention.ipynb", solution())
    (subs / "files" / "notes.py").write_text("print('hello')\n")
    save(subs / "Zoë Ångström 张伟", CH1, solution())
    save(subs / "copyname", "01_attention (1).ipynb", solution())
    return paths


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def leftover_processes() -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(m in cmd for m in MARKERS):
            found.append(f"{pid}: {cmd}")
    return found


class Graded:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.subs, self.out, home = root / "submissions", root / "out", root / "home"
        self.out.mkdir(parents=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.paths = build_class(self.subs, self.out, home, self.listener.getsockname()[1])
        self.paths["sentinel"].write_text("my notes")
        self.paths["secret"].parent.mkdir(parents=True)
        self.paths["secret"].write_text(SECRET)
        monkeypatch.setenv("HOME", str(home))  # the instructor's home, as the grader sees it
        self.course_mtime = self.paths["course"].stat().st_mtime
        self.before = tree_hashes(self.subs)
        try:
            self.summary = grade(self.subs, self.out, jobs=2, timeout=TIMEOUT, seed=SEED, progress=False)
        finally:
            try:
                self.listener.accept()[0].close()
                self.connected = True
            except BlockingIOError:
                self.connected = False
            self.listener.close()
            self.planted_existed = self.paths["planted"].exists()
            self.paths["planted"].unlink(missing_ok=True)
            if self.paths["course"].stat().st_mtime != self.course_mtime:  # undo, then fail the test
                os.utime(self.paths["course"], (self.course_mtime, self.course_mtime))
                self.course_changed = True
            else:
                self.course_changed = False
        with open(self.out / "grades.csv", newline="", encoding="utf-8") as f:
            self.rows = list(csv.DictReader(f))
        self.isolation = self.summary.measures["isolation"]
        self.inside = self.summary.measures["inside"]

    def row(self, student: str, exercise: str) -> dict:
        found = [r for r in self.rows if r["student"] == student and r["exercise"] == exercise]
        assert len(found) == 1, (student, exercise, found)
        return found[0]

    def file_row(self, student: str, name: str) -> dict:
        found = [r for r in self.rows if r["student"] == student and r["exercise"] == "" and
                 r["message"].startswith(name + ":")]
        assert len(found) == 1, (student, name, [r for r in self.rows if r["student"] == student])
        return found[0]

    def feedback(self, student: str) -> str:
        return (self.out / "feedback" / f"{student}.md").read_text(encoding="utf-8")

    def gradescope(self, student: str) -> dict:
        return json.loads((self.out / "gradescope" / f"{student}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Graded:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return Graded(tmp_path_factory.mktemp("class"), monkeypatch)


def test_the_expected_isolation_is_in_force(graded):
    """tests/test_grading_unprivileged.py runs this module as an ordinary user and says what to expect."""
    expected = os.environ.get("ATTNKIT_EXPECT_ISOLATION")
    if expected is None:
        root = os.geteuid() == 0 and not os.environ.get("ATTNKIT_SANDBOX_NO_ROOT")
        expected = None if os.environ.get("ATTNKIT_SANDBOX_NO_NAMESPACES") else (
            "root-namespaces" if root else "user-namespaces")
    if expected is None:
        pytest.skip("no expectation without namespaces")
    assert graded.isolation == expected, graded.summary.measures


def self_check(ex_id: str, source: str):
    """What the student's own `check()` reports for this function, with the hidden cases too."""
    namespace: dict = {}
    exec(textwrap.dedent(source), namespace)
    ex = get_exercise(ex_id)
    return run_exercise(ex, namespace[ex.function], seed=SEED, hidden=True)


# --- the tests ------------------------------------------------------------------------------------


def test_solutions_get_full_marks(graded):
    for name in NOTEBOOKS:
        for ex in exercises_for(name):
            row = graded.row("correct", ex.id)
            assert (row["status"], float(row["points"])) == ("passed", ex.points), row
            assert row["message"].startswith(f"✓ Exercise {ex.id}") and "checks passed" in row["message"]
    with open(graded.out / "gradebook.csv", newline="", encoding="utf-8") as f:
        book = {r["student"]: r for r in csv.DictReader(f)}
    assert float(book["correct"]["total"]) == float(book["correct"]["max_total"]) > 0
    assert set(Path(n).stem for n in NOTEBOOKS) <= set(book["correct"])


def test_released_stubs_get_zero_and_not_implemented(graded):
    for name in NOTEBOOKS:
        for ex in exercises_for(name):
            row = graded.row("blank", ex.id)
            assert (row["status"], float(row["points"])) == ("not_implemented", 0.0), row
            assert "not implemented yet" in row["message"]


def test_wrong_answers_get_the_self_checks_targeted_message(graded):
    for ex_id, source in (("1.1", WRONG_SOFTMAX), ("1.2", WRONG_SCORES)):
        expected = self_check(ex_id, source)
        row = graded.row("wrong", ex_id)
        assert row["status"] == expected.status == "failed"
        assert float(row["points"]) == expected.points < get_exercise(ex_id).points
        assert row["message"] == expected.render()
    assert "NaN" in graded.row("wrong", "1.1")["message"]
    assert "Hint: " in graded.row("wrong", "1.2")["message"]  # the misconception's targeted hint
    assert graded.row("wrong", "1.3")["status"] == "passed"


def test_hidden_cases_are_graded_but_never_described(graded):
    row, expected = graded.row("hardcoder", "1.1"), self_check("1.1", HARDCODED_SOFTMAX)
    assert row["status"] == "failed" and 0 < float(row["points"]) == expected.points < 1
    assert row["message"] == expected.render() and "A hidden check failed (its inputs are not shown)" in row["message"]
    texts = [graded.feedback(s) for s in ("wrong", "patcher", "correct", "hardcoder")]
    texts += [t["output"] for s in ("wrong", "hardcoder") for t in graded.gradescope(s)["tests"]]
    texts += [r["message"] for r in graded.rows]
    for name in NOTEBOOKS:
        for ex in exercises_for(name):
            hidden = [c for c in ex.cases(SEED, hidden=True) if c.hidden]
            assert hidden, ex.id
            for case in hidden:  # messages quote a case's name: `Check "<name>":`
                assert not any(f'"{case.name}"' in text for text in texts), (ex.id, case.name)
    # the hidden cases were run: more checks than the public ones
    every = len(get_exercise("1.1").cases(SEED, hidden=True))
    assert f"all {every} checks passed" in graded.row("correct", "1.1")["message"]
    assert every > len(get_exercise("1.1").cases())


def test_infinite_loop_in_a_function_times_out_that_exercise_only(graded):
    row = graded.row("loop", "1.1")
    assert (row["status"], float(row["points"])) == ("timeout", 0.0)
    assert "did not finish" in row["message"] and "infinite loop" in row["message"]
    assert all(graded.row("loop", f"1.{k}")["status"] == "passed" for k in (2, 3, 4))


def test_a_cell_that_never_ends_is_killed_at_the_timeout(graded):
    for ex in exercises_for(CH1):
        row = graded.row("hang", ex.id)
        assert (row["status"], float(row["points"])) == ("timeout", 0.0)
        assert f"time limit ({TIMEOUT:g} s)" in row["message"] and "cell" in row["message"]
    # Killed by the zygote's deadline (what the grader reports), not by the end of the checks; the time itself
    # is only bounded below, since a busy machine may take a while to reap and clean up.
    assert graded.gradescope("hang")["execution_time"] >= 0.9 * TIMEOUT


def test_a_runaway_cell_is_interrupted_and_the_rest_is_graded(graded):
    assert all(graded.row("toploop", ex.id)["status"] == "passed" for ex in exercises_for(CH1))
    assert "stopped: it was still running at the time limit" in graded.feedback("toploop")
    assert graded.summary.cell_problems["timeout"] == 1


def test_sys_exit_in_a_cell_is_skipped_and_in_a_function_is_an_error(graded):
    assert graded.row("exits", "1.1")["status"] == "passed"  # like Jupyter: the next cells still run
    assert "sys.exit(3)" in graded.feedback("exits")
    row = graded.row("exits", "1.4")
    assert (row["status"], float(row["points"])) == ("error", 0.0)
    assert "sys.exit(0)" in row["message"]


def test_os_exit_in_a_function_crashes_that_exercise_only(graded):
    row = graded.row("osexit_fn", "1.2")
    assert (row["status"], float(row["points"])) == ("crashed", 0.0)
    assert "exit code 0" in row["message"] and "exercise 1.2" in row["message"]
    for k in (1, 3, 4):  # 1.1 before the crash, the others in a fresh worker after it
        assert graded.row("osexit_fn", f"1.{k}")["status"] == "passed"


def test_os_exit_in_a_cell_crashes_the_notebook(graded):
    for ex in exercises_for(CH1):
        row = graded.row("osexit_cell", ex.id)
        assert (row["status"], float(row["points"])) == ("crashed", 0.0)
        assert "exit code 3" in row["message"] and "cell" in row["message"]


def test_segfault_crashes_that_exercise_only(graded):
    row = graded.row("segfault", "1.3")
    assert (row["status"], float(row["points"])) == ("crashed", 0.0)
    assert "segmentation fault" in row["message"]
    assert graded.row("segfault", "1.4")["status"] == "passed"


def test_large_allocation_is_a_memory_row(graded):
    row = graded.row("memory", "1.1")
    assert (row["status"], float(row["points"])) == ("memory", 0.0)
    assert "ran out of memory" in row["message"]
    assert graded.row("memory", "1.2")["status"] == "passed"


def test_print_flood_hits_the_output_limit_and_the_grader_stays_small(graded):
    row = graded.row("flood", "1.2")
    assert (row["status"], float(row["points"])) == ("output_limit", 0.0)
    assert "printed more than" in row["message"]
    assert graded.row("flood", "1.1")["status"] == "passed"
    assert "printed more than" in graded.feedback("flood")  # the flooding cell, noted
    assert len(graded.feedback("flood")) < 20_000  # what reached the grader is the capped tail, not 8 MiB


def test_monkeypatching_torch_numpy_or_the_checker_earns_nothing(graded):
    row = graded.row("patcher", "1.1")
    assert (row["status"], float(row["points"])) == ("failed", 0.0)
    row = graded.row("patcher", "1.2")
    assert (row["status"], float(row["points"])) == ("error", 0.0)
    assert "subclass of torch.Tensor" in row["message"]
    assert graded.row("patcher", "1.3")["status"] == "passed"


def test_an_object_equal_to_everything_earns_nothing(graded):
    row = graded.row("alwayseq", "1.1")
    assert (row["status"], float(row["points"])) == ("error", 0.0)
    assert "should return a torch.Tensor" in row["message"] and "AlwaysEqual" in row["message"]


def test_grading_never_modifies_a_submission(graded):
    assert tree_hashes(graded.subs) == graded.before


def test_a_vandal_loses_nobody_anything(graded):
    """Isolated, its writes are refused; unisolated, the grader restores them and gives it no points."""
    assert tree_hashes(graded.subs) == graded.before
    assert graded.paths["sentinel"].read_text() == "my notes"
    assert not graded.planted_existed or graded.isolation == "none"  # planted, then removed by the guard
    assert not graded.paths["planted"].exists() and not graded.course_changed
    rows = [graded.row("vandal", ex.id) for ex in exercises_for(CH1)]
    if graded.isolation in ("root-namespaces", "user-namespaces"):
        assert all(row["status"] == "passed" for row in rows)
        assert graded.summary.tampered == []
    elif graded.isolation == "none":
        assert all((row["status"], float(row["points"])) == ("tampered", 0.0) for row in rows)
        assert "SUBMISSIONS/correct/01_attention.ipynb" in rows[0]["message"] and "restored" in rows[0]["message"]
        assert graded.summary.tampered == [f"vandal/{CH1}"]  # nobody else is blamed
    for student in ("correct", "Zoë Ångström 张伟"):  # every other grade is right
        assert all(graded.row(student, ex.id)["status"] == "passed" for ex in exercises_for(CH1))


def test_the_home_folder_and_the_network_are_out_of_reach_where_measured(graded):
    """What the summary says is in force is what a submission meets."""
    hidden = graded.inside["private_visible"] == []
    assert (graded.row("snoop", "1.1")["status"] == "passed") == hidden
    assert graded.connected != graded.inside["network_blocked"]
    assert (graded.row("netcall", "1.1")["status"] == "passed") == graded.inside["network_blocked"]
    if graded.isolation in ("root-namespaces", "user-namespaces"):
        assert hidden and graded.inside["network_blocked"] and graded.inside["grader_unreachable"]
        assert graded.inside["submission_hidden"] and graded.inside["output_hidden"]
        assert graded.inside["writable_mounts"] == [] and graded.inside["capabilities"] == 0


def test_no_process_outlives_its_grading(graded):
    assert leftover_processes() == []
    assert all(graded.row("daemon", ex.id)["status"] == "passed" for ex in exercises_for(CH1))
    assert graded.summary.leftovers >= 2


def test_corrupt_empty_and_old_notebooks(graded):
    for student, words in (("corrupt", "not valid JSON"), ("empty", "the file is empty")):
        for ex in exercises_for(CH1):
            row = graded.row(student, ex.id)
            assert (row["status"], float(row["points"])) == ("invalid", 0.0)
            assert words in row["message"]
    assert all(graded.row("old", ex.id)["status"] == "passed" for ex in exercises_for(CH1))
    assert "converted from nbformat 3" in graded.feedback("old")


def test_missing_or_renamed_function(graded):
    row = graded.row("renamed", "1.1")
    assert (row["status"], float(row["points"])) == ("missing", 0.0)
    assert "no function named `softmax`" in row["message"] and "`my_softmax`" in row["message"]
    assert graded.row("renamed", "1.2")["status"] == "passed"  # check("1.2", my_scores) names it


def test_duplicate_and_unexpected_files_get_rows(graded):
    assert graded.row("files", "1.1")["status"] == "passed"  # the exactly named file wins
    assert graded.file_row("files", "01_attention (1).ipynb")["status"] == "duplicate"
    assert graded.file_row("files", "attention.ipynb")["status"] == "unexpected_file"
    assert "not a released notebook" in graded.file_row("files", "attention.ipynb")["message"]
    row = graded.file_row("files", "notes.py")
    assert row["status"] == "unexpected_file" and "not a notebook" in row["message"]
    assert graded.row("copyname", "1.1")["status"] == "passed"
    assert "graded `01_attention (1).ipynb`" in graded.feedback("copyname")


def test_non_ascii_student_names(graded):
    student = "Zoë Ångström 张伟"
    assert all(graded.row(student, ex.id)["status"] == "passed" for ex in exercises_for(CH1))
    assert graded.feedback(student).startswith(f"# Feedback for {student}")
    assert graded.gradescope(student)["score"] == sum(ex.points for ex in exercises_for(CH1))


def test_gradescope_results_are_valid(graded):
    for path in sorted((graded.out / "gradescope").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data["execution_time"], int | float) and isinstance(data["output"], str)
        assert data["score"] == pytest.approx(sum(t["score"] for t in data["tests"]))
        for test in data["tests"]:
            assert {"name", "score", "max_score", "status", "visibility", "output"} <= set(test)
            assert test["status"] in ("passed", "failed") and test["visibility"] == "visible"
            assert 0 <= test["score"] <= test["max_score"]


def test_feedback_has_points_and_the_self_check_message(graded):
    text = graded.feedback("wrong")
    assert f"({float(graded.row('wrong', '1.2')['points']):g} / 1)" in text
    assert graded.row("wrong", "1.2")["message"] in text


def test_summary_reports_counts_and_sandbox_measures(graded):
    text = graded.summary.render()
    assert "Graded" in text and "timeout" in text and "crashed" in text
    assert "Sandbox:" in text and "RLIMIT_AS" in text and "measured from inside a probe worker" in text
    if graded.isolation == "root-namespaces":
        assert "unprivileged uid" in text and "Not protected" not in text
    elif graded.isolation == "user-namespaces":
        assert "user namespace" in text and "Not protected" not in text
    else:
        assert "NOT isolated" in text and "Not protected: submissions writable" in text and "tampered" in text
