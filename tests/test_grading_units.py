"""The grader's small steps on their own: finding submissions, reading notebooks, the sandbox without root."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
import torch

from attnkit.grading import grade
from attnkit.grading.discover import discover, discover_one
from attnkit.grading.guard import Guard
from attnkit.grading.notebook import InvalidNotebook, read_code_cells, to_python

NOTEBOOKS = ["01_attention.ipynb", "02_self_attention.ipynb"]
REPO = Path(__file__).resolve().parents[1]


def touch(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_discover_matches_released_names_and_explains_the_rest(tmp_path):
    touch(tmp_path / "ana" / "01_attention.ipynb")
    touch(tmp_path / "ana" / "01_attention (1).ipynb")
    touch(tmp_path / "ana" / "sub" / "02_self_attention.ipynb")
    touch(tmp_path / "ana" / "helper.py")
    touch(tmp_path / "ana" / ".DS_Store")
    touch(tmp_path / "ana" / ".ipynb_checkpoints" / "01_attention-checkpoint.ipynb")
    touch(tmp_path / "Bård" / "01_Attention copy.ipynb")
    touch(tmp_path / "Bård" / "03_masking.ipynb")
    touch(tmp_path / "__MACOSX" / "ana" / "01_attention.ipynb")
    touch(tmp_path / "loose.ipynb")
    (tmp_path / "ana" / "link.ipynb").symlink_to(tmp_path / "ana" / "helper.py")
    found = discover(tmp_path, NOTEBOOKS)
    assert found.students == ["Bård", "ana"]
    graded = {(s.student, s.notebook): s for s in found.submissions}
    assert graded["ana", "01_attention.ipynb"].path.name == "01_attention.ipynb"
    assert graded["ana", "01_attention.ipynb"].note == ""
    assert graded["ana", "02_self_attention.ipynb"].note.startswith("graded `sub/02_self_attention.ipynb`")
    assert "graded `01_Attention copy.ipynb`" in graded["Bård", "01_attention.ipynb"].note
    strays = {(s.student, s.name): s for s in found.strays}
    assert strays["ana", "01_attention (1).ipynb"].status == "duplicate"
    assert strays["ana", "helper.py"].status == "unexpected_file"
    assert "symbolic link" in strays["ana", "link.ipynb"].message
    assert "not a released notebook" in strays["Bård", "03_masking.ipynb"].message
    assert not any("checkpoint" in name or "DS_Store" in name for _, name in strays)
    assert any("loose.ipynb" in w for w in found.warnings)


def test_discover_one_student_folder(tmp_path):
    touch(tmp_path / "01_attention.ipynb")
    found = discover_one(tmp_path, "submission", NOTEBOOKS)
    assert [s.notebook for s in found.submissions] == ["01_attention.ipynb"] and found.students == ["submission"]


@pytest.mark.parametrize("content, words", [
    (b"", "the file is empty"),
    (b"\n  \n", "the file is empty"),
    (b'{"cells": [', "not valid JSON (line 1"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b'{"hello": 1}', "not a Jupyter notebook"),
    (b'{"nbformat": 4, "cells": 3}', "is not a list"),
    (b'{"nbformat": 9, "cells": []}', "unsupported notebook format version 9"),
])
def test_bad_notebooks_are_reported_not_raised(tmp_path, content, words):
    path = tmp_path / "nb.ipynb"
    path.write_bytes(content)
    with pytest.raises(InvalidNotebook, match=words.replace("(", r"\(")):
        read_code_cells(path)
    assert path.read_bytes() == content


def test_old_nbformat_is_converted_and_ipython_syntax_transformed(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport torch"),
        nbformat.v4.new_code_cell("!pip install foo\nx = 1"),
        nbformat.v4.new_code_cell("%%time\ny = 2"),
    ])
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.writes(nbformat.convert(nb, 3), version=3))
    cells, note = read_code_cells(path)
    assert "nbformat 3" in note
    assert [c.index for c in cells] == [2, 3, 4]
    assert cells[0].source.startswith("get_ipython().run_line_magic('matplotlib', 'inline')")
    assert "get_ipython().system('pip install foo')" in cells[1].source
    assert cells[2].source.startswith("get_ipython().run_cell_magic('time'")
    assert to_python("x = 1  # 100% plain") == "x = 1  # 100% plain"


@pytest.mark.parametrize("namespaces", [True, False], ids=["user-namespaces", "no-namespaces"])
def test_sandbox_without_root_still_kills_leftovers_and_says_what_is_missing(tmp_path, monkeypatch, namespaces):
    """ATTNKIT_SANDBOX_NO_ROOT makes the zygote behave as if it were not root (no uid per slot); with
    ATTNKIT_SANDBOX_NO_NAMESPACES too, nothing isolates the worker and the summary says so first."""
    if not (REPO / "solutions" / "01_attention.ipynb").exists():
        pytest.skip("solutions/01_attention.ipynb needed")
    nb = nbformat.read(REPO / "solutions" / "01_attention.ipynb", as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell(
        "import os\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execvp('sleep', ['sleep', '987.789'])\n    os._exit(0)\nos.waitpid(pid, 0)\n"))
    (tmp_path / "subs" / "ada").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "subs" / "ada" / "01_attention.ipynb")
    monkeypatch.setenv("ATTNKIT_SANDBOX_NO_ROOT", "1")
    if not namespaces:
        monkeypatch.setenv("ATTNKIT_SANDBOX_NO_NAMESPACES", "1")
    summary = grade(tmp_path / "subs", tmp_path / "out", jobs=1, timeout=30, notebooks=["01_attention.ipynb"],
                    progress=False)
    assert summary.leftovers >= 1
    assert not any(b"987.789" in _cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit())
    text = summary.render()
    assert "unprivileged uid" not in text and "subreaper" in text
    if namespaces:
        assert "user namespace" in text and "Not protected" not in text
    else:
        assert "NOT isolated (turned off by ATTNKIT_SANDBOX_NO_NAMESPACES)" in text
        assert "Not protected: submissions writable" in text and "keeps a copy of submissions" in text
    data = json.loads((tmp_path / "out" / "gradescope" / "ada.json").read_text())
    assert all(t["status"] == "passed" for t in data["tests"])


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- guard.py: what a sandbox that cannot hide the files leaves to the grader -----------------------


def _tree(root: Path) -> dict[str, tuple]:
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_mode & 0o7777,
                                       None if p.is_dir() else (p.read_bytes(), p.stat().st_mtime_ns))
            for p in sorted(root.rglob("*"))}


def test_guard_restores_every_kind_of_damage_and_names_it(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "out"
    for student in ("ada", "bo"):
        (subs / student).mkdir(parents=True)
        (subs / student / "01.ipynb").write_text(f"{student}'s work")
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (subs / "ada" / "link").symlink_to("01.ipynb")
    before = _tree(tmp_path)
    guard = Guard([subs, out])
    assert guard.check() == []  # nothing changed, nothing said
    (subs / "ada" / "01.ipynb").write_text("pwned")  # rewritten
    os.utime(subs / "ada" / "01.ipynb", ns=(0, before["subs/ada/01.ipynb"][2][1]))  # its mtime put back
    (subs / "bo" / "01.ipynb").unlink()  # deleted
    os.chmod(subs / "bo", 0o500)  # its folder made read-only
    (subs / "ada" / "link").unlink()
    (subs / "ada" / "link").symlink_to("/etc/passwd")  # a link pointed elsewhere
    (subs / "planted.py").write_text("x")  # added
    (subs / "newdir").mkdir()
    (subs / "newdir" / "f").write_text("y")
    os.chmod(subs / "newdir", 0o500)
    shutil.rmtree(out)  # the whole output folder
    changed = guard.check()
    assert _tree(tmp_path) == before
    assert {os.path.relpath(p, tmp_path) for p in changed} >= {
        "subs/ada/01.ipynb", "subs/bo/01.ipynb", "subs/bo", "subs/ada/link", "subs/planted.py", "subs/newdir",
        "out", "out/notes.txt"}
    assert guard.check() == [] and guard.unrestored == []


def test_guard_says_what_it_could_not_restore(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"x" * 1000)
    (tmp_path / "small.txt").write_text("ok")
    guard = Guard([tmp_path], max_bytes=100)
    assert [os.path.basename(p) for p in guard.too_big] == ["big.bin"]
    (tmp_path / "big.bin").unlink()
    (tmp_path / "small.txt").unlink()
    assert len(guard.check()) == 2
    assert (tmp_path / "small.txt").read_text() == "ok"
    assert len(guard.unrestored) == 1 and "big.bin" in guard.unrestored[0] and "too large" in guard.unrestored[0]


def test_the_grader_reads_only_the_tail_of_a_huge_output(tmp_path):
    """A print flood cannot make the grader read (or hold) more than a few KiB of a worker's output."""
    from attnkit.grading.results import tail

    path = tmp_path / "output.txt"
    with open(path, "wb") as f:
        f.truncate(2**30)  # 1 GiB, sparse
        f.seek(2**30 - 5)
        f.write(b"last\n")
    text = tail(path)
    assert len(text) <= 4096 and text.endswith("last\n")
    (tmp_path / "fifo").unlink(missing_ok=True)
    os.mkfifo(tmp_path / "fifo")  # a worker may leave a FIFO where a file was expected: no hang
    assert tail(tmp_path / "fifo") == ""


def test_a_workers_output_description_cannot_make_the_grader_allocate_or_unpickle():
    """ex<N>.bin and its JSON come from student-controlled code: every claim is checked against the bytes."""
    from attnkit.grading.results import _tensor

    block = torch.arange(6, dtype=torch.float32).numpy().tobytes()
    good = {"dtype": "torch.float32", "numpy": "float32", "shape": [2, 3], "offset": 0, "nbytes": 24}
    assert torch.equal(_tensor(good, block), torch.arange(6, dtype=torch.float32).view(2, 3))
    assert _tensor({**good, "dtype": "torch.bfloat16"}, block).dtype == torch.bfloat16
    for bad in ({**good, "shape": [2**40, 2**40]},  # a huge claimed size
                {**good, "nbytes": 2**40},  # past the end of the block
                {**good, "offset": 8},  # shape and bytes disagree with the block's length
                {**good, "offset": -4},
                {**good, "numpy": "object"}, {**good, "numpy": "O"},  # objects: pickles
                {**good, "shape": [-1, 6]}, {**good, "shape": "2, 3"}, "not a dict"):
        assert _tensor(bad, block) is None, bad
