"""The `attnkit` command's option parsing: bad numbers exit 2 with a message naming the option; --version."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import attnkit
from attnkit.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["grade", "subs", "--out", "out"], ["gradescope-bundle", "out.zip"]])
@pytest.mark.parametrize("option,value,message", [
    ("--timeout", "-1", "positive number of seconds"),
    ("--timeout", "0", "positive number of seconds"),
    ("--timeout", "nan", "positive number of seconds"),
    ("--timeout", "soon", "positive number of seconds"),
    ("--memory-mb", "0", "positive integer"),
    ("--memory-mb", "-512", "positive integer"),
    ("--memory-mb", "1.5", "positive integer"),
])
def test_bad_numbers_exit_2_naming_the_option(command, option, value, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing is graded or written: parsing stops first
    with pytest.raises(SystemExit) as exit_info:
        main([*command, f"{option}={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: {option} must be a {message}, not '{value}'" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option,value,message", [
    ("--jobs", "0", "a positive integer"),
    ("--jobs", "two", "a positive integer"),
    ("--output-kb", "-1", "a positive integer"),
    ("--output-kb", "0", "a positive integer"),
    ("--seed", "-3", "a non-negative integer"),
    ("--seed", "1.5", "a non-negative integer"),
])
def test_bad_grade_numbers_exit_2_naming_the_option(option, value, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["grade", "subs", "--out", "out", option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: {option} must be {message}, not '{value}'" in capsys.readouterr().err


def test_good_numbers_reach_grade(monkeypatch, tmp_path):
    seen = {}

    def fake_grade(submissions, out, **options):
        seen.update(options)
        raise attnkit.grading.GradingError("stop here")

    import attnkit.grading

    monkeypatch.setattr(attnkit.grading, "grade", fake_grade)
    code = main(["grade", "subs", "--out", "out", "--timeout", "2.5", "--jobs", "1", "--seed", "0",
                 "--memory-mb", "64", "--output-kb", "8"])
    assert code == 2  # the fake's GradingError
    assert seen == {"timeout": 2.5, "jobs": 1, "seed": 0, "memory_mb": 64, "output_kb": 8}


def test_version_prints_the_installed_version():
    try:
        expected = importlib.metadata.version("attnkit")
    except importlib.metadata.PackageNotFoundError:
        expected = attnkit.__version__
    done = subprocess.run([sys.executable, "-m", "attnkit.cli", "--version"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"attnkit {expected}"


def test_version_falls_back_to_the_package_version(monkeypatch, capsys):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(attnkit, "__version__", "9.8.7-test")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == "attnkit 9.8.7-test"
