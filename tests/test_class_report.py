"""Misconception ids, the grades.csv `misconception` column and the class report (class_report.py)."""

from __future__ import annotations

import re

from attnkit.checks import all_exercises
from attnkit.checks.core import GENERIC_IDS

KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_every_misconception_has_a_unique_kebab_case_name():
    for ex in all_exercises().values():
        names = [m.name for m in ex.misconceptions] + [f"error-{name}" for _, _, name in ex.error_hints]
        assert all(KEBAB.match(n) for n in names), (ex.id, [n for n in names if not KEBAB.match(n)])
        assert len(set(names)) == len(names), (ex.id, sorted(n for n in names if names.count(n) > 1))
        assert set(ex.misconception_ids()) == {f"{ex.id}/{n}" for n in names}


def test_generic_ids_are_kebab_case_and_apart_from_the_exercises():
    for hint_id in GENERIC_IDS:
        family, name = hint_id.split("/")
        assert family in ("generic", "error") and KEBAB.match(name), hint_id


def test_the_judge_records_which_hint_it_gave():
    import math

    import torch

    from attnkit.checks import get_exercise, run_exercise
    from attnkit.checks.core import _named_exception_hint

    def by_d_k(query, key, scale=None):
        return query @ key.transpose(-2, -1) * (1 / query.shape[-1] if scale is None else scale)

    def off_by_one(query, key, scale=None):
        return query @ key.transpose(-2, -1) * (1 / math.sqrt(query.shape[-1]) if scale is None else scale) + 1

    report = run_exercise(get_exercise("1.2"), by_d_k)
    first = next(r for r in report.results if r.status != "passed")
    assert report.misconception == first.misconception == "1.2/divided-by-d-k"
    assert "Hint: " + get_exercise("1.2").misconception_ids()["1.2/divided-by-d-k"] in report.render()
    assert run_exercise(get_exercise("1.2"), off_by_one).misconception == ""
    try:
        torch.randn(2, 3) @ torch.randn(2, 3)
    except RuntimeError as err:
        assert _named_exception_hint(err, "q = x @ W_q")[0] == "error/matmul-shape"
        assert _named_exception_hint(err, "q = x @ W_q.T")[0] in ("error/dot-t", "error/matmul-shape")
    try:
        torch.randn(2, 3) / torch.randn(2)
    except RuntimeError as err:
        assert _named_exception_hint(err, "return e / e.sum(dim=-1)")[0] == "error/keepdim"
        assert _named_exception_hint(err, "return e / e.sum(dim=-1)")[0] in GENERIC_IDS
