"""Exercises and their tests: one code path for the students' self-checks and the instructor's grader.

A test is a `Case` (named inputs). Running a case calls a function on copies of its inputs and turns
what comes back into plain tensors (`run_case`); judging compares those with the reference's, and
explains a mismatch (`judge`). The self-check does both in the student's kernel; the grader runs the
first in a sandboxed worker and the second in its own process, so nothing the student's code does
to torch, numpy or `==` can change a verdict.
"""

from __future__ import annotations

import math
import os
import re
import traceback
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from attnkit._validate import shape_str

__all__ = ["Case", "Misconception", "Exercise", "CaseResult", "ExerciseReport", "run_case", "judge",
           "run_exercise", "case_seed", "randn", "exception_hint", "value_hint"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep

# Statuses, shared with the grader (which adds "timeout", "crashed", "missing", "invalid").
PASSED, FAILED, ERROR, NOT_IMPLEMENTED = "passed", "failed", "error", "not_implemented"


@dataclass(frozen=True)
class Case:
    """One test: keyword inputs for the exercise's function, and a name that says what they are."""

    name: str  # shown to students, e.g. "batch of 2, L=3 queries, S=5 keys, boolean mask"
    inputs: dict[str, Any]  # tensors and plain values (int, float, bool, str, lists of them)
    hidden: bool = False  # hidden cases run only in the grader and are never described in feedback


@dataclass(frozen=True)
class Misconception:
    """A predictable wrong answer: if the student's output equals `wrong(**inputs)`, say `hint`."""

    wrong: Callable[..., Any]  # called like the reference, returns the mistaken output
    hint: str
    # a short kebab-case slug, unique within its exercise: the id "<exercise id>/<name>" names it in grades.csv
    name: str = ""


@dataclass(frozen=True)
class Exercise:
    """A graded exercise: which function the student writes, its tests and the reference solution."""

    id: str  # "1.3": chapter.number
    notebook: str  # the released notebook it lives in, e.g. "01_attention.ipynb"
    function: str  # the name the student defines in that notebook
    title: str  # one line: what the function does
    reference: Callable[..., Any]  # the correct function, called exactly like the student's
    make_cases: Callable[[torch.Generator], list[Case]]  # the public cases (self-check and grader)
    make_hidden_cases: Callable[[torch.Generator], list[Case]] | None = None  # grader only
    call: Callable[[Callable[..., Any], dict[str, Any]], Any] | None = None  # default: fn(**inputs)
    output_names: tuple[str, ...] = ("output",)  # names of the returned tensors, for messages
    # what each output holds, said in messages after its name when the name alone could mislead ("" = nothing)
    output_notes: tuple[str, ...] = ()
    # the "inputs: ..." line of messages, when listing shapes would hide what a learner needs to debug
    describe: Callable[[dict[str, Any]], str] | None = None
    misconceptions: tuple[Misconception, ...] = ()
    # (regex on the message of an exception the student's code raised, or on "TypeName: message", hint,
    # kebab-case name), tried before
    # the generic ones; the hint's id is "<exercise id>/error-<name>"
    error_hints: tuple[tuple[str, str, str], ...] = ()
    # where NaN comes from in this exercise, for the message when an output holds NaN (None: the usual two,
    # a fully masked row and exp() overflowing)
    nan_causes: str | None = None
    points: float = 1.0
    atol: float = 1e-5
    rtol: float = 1e-4

    def cases(self, seed: int | None = None, *, hidden: bool = False) -> list[Case]:
        """The public cases (seeded by the exercise id), plus hidden ones drawn from `seed`."""
        cases = list(self.make_cases(torch.Generator().manual_seed(case_seed(self.id))))
        if hidden and self.make_hidden_cases is not None:
            gen = torch.Generator().manual_seed(case_seed(self.id, seed if seed is not None else 0, "hidden"))
            cases += [Case(c.name, c.inputs, hidden=True) for c in self.make_hidden_cases(gen)]
        return cases

    def invoke(self, fn: Callable[..., Any], inputs: dict[str, Any]) -> Any:
        """Call `fn` (student's or reference) on the case inputs, the one way both are called."""
        return self.call(fn, inputs) if self.call is not None else fn(**inputs)

    def misconception_ids(self) -> dict[str, str]:
        """Id -> hint of this exercise's own misconceptions and error hints (see `hint_ids`)."""
        found = {f"{self.id}/{m.name}": m.hint for m in self.misconceptions}
        found.update({f"{self.id}/error-{name}": hint for _, hint, name in self.error_hints})
        return found


@dataclass
class CaseResult:
    """The verdict on one case."""

    case: Case
    status: str  # PASSED, FAILED, ERROR or NOT_IMPLEMENTED
    message: str = ""
    misconception: str = ""  # id of the hint in `message` ("1.2/divided-by-d-k", "generic/wrong-axis"), or ""
    outputs: tuple[torch.Tensor, ...] = ()  # what the student's function returned (FAILED cases)


@dataclass
class ExerciseReport:
    """All case verdicts of one exercise, with the points they earn and a readable summary."""

    exercise: Exercise
    results: list[CaseResult] = field(default_factory=list)
    status_override: str | None = None  # set by the grader: "missing", "timeout", ...
    message_override: str = ""

    @property
    def passed(self) -> int:
        return sum(r.status == PASSED for r in self.results)

    @property
    def status(self) -> str:
        if self.status_override:
            return self.status_override
        if self.results and all(r.status == PASSED for r in self.results):
            return PASSED
        if any(r.status == NOT_IMPLEMENTED for r in self.results):
            return NOT_IMPLEMENTED
        if any(r.status == ERROR for r in self.results):
            return ERROR
        return FAILED

    @property
    def misconception(self) -> str:
        """The id of the hint `render()` shows (its first failing case's), or "" when it shows none."""
        if self.status_override or self.status not in (FAILED, ERROR):
            return ""
        first = next((r for r in self.results if r.status != PASSED), None)
        return first.misconception if first is not None and not first.case.hidden else ""

    @property
    def points(self) -> float:
        """Partial credit: the share of cases passed, of the exercise's points."""
        if self.status_override or not self.results:
            return 0.0
        return round(self.exercise.points * self.passed / len(self.results), 2)

    def render(self, *, show_hidden: bool = False) -> str:
        """A few lines a student can act on: pass, not implemented yet, or the first failing case."""
        ex = self.exercise
        head = f"Exercise {ex.id} ({ex.function})"
        if self.status_override:
            return f"✗ {head}: {self.message_override}"
        status = self.status
        if status == PASSED:
            return f"✓ {head}: all {len(self.results)} checks passed."
        if status == NOT_IMPLEMENTED:
            return (f"… {head}: not implemented yet. Replace the `raise NotImplementedError(...)` line "
                    f"in `{ex.function}` with your code, then run this cell again.")
        lines = [f"✗ {head}: {self.passed} of {len(self.results)} checks passed."]
        first = next(r for r in self.results if r.status != PASSED)
        if first.case.hidden and not show_hidden:
            lines.append("  A hidden check failed (its inputs are not shown). Re-read the exercise's "
                         "edge cases: masks, batch sizes, L != S.")
        else:
            lines.append(f'  Check "{first.case.name}":')
            lines += ["    " + line for line in first.message.splitlines()]
        return "\n".join(lines)


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    """Seeded standard-normal case inputs of the given shape, times `scale`."""
    return torch.randn(*shape, generator=gen) * scale


def case_seed(*parts: object) -> int:
    """A stable seed from strings and ints (Python's hash() is salted per process; crc32 is not)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


# ---------------------------------------------------------------------------------------------------
# Running: call a function on a case and turn its result into plain tensors.
# ---------------------------------------------------------------------------------------------------


def copy_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """Fresh copies, so a function that changes its inputs in place cannot change the next call's."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else _deep_copy_plain(v) for k, v in inputs.items()}


def _deep_copy_plain(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return type(v)(_deep_copy_plain(x) for x in v)
    if isinstance(v, dict):
        return {k: _deep_copy_plain(x) for k, x in v.items()}
    if isinstance(v, torch.Tensor):
        return v.clone()
    return v


class OutputTypeError(Exception):
    """The function returned something that is not a tensor (or a tuple of tensors)."""


def to_plain(out: Any, n_outputs: int, names: Sequence[str] = ()) -> tuple[torch.Tensor, ...]:
    """Turn a result into a tuple of ordinary CPU tensors, refusing anything else with a clear reason.

    Python numbers become 0-d tensors. NumPy arrays, tensor subclasses and objects that pretend to be
    tensors are refused: the next exercise would feed them to torch. `names` name the outputs in errors.
    """
    items = list(out) if isinstance(out, tuple | list) and n_outputs > 1 else [out]
    if isinstance(out, tuple | list) and n_outputs == 1 and len(out) != 1:
        raise OutputTypeError(f"returned a {type(out).__name__} of {len(out)} items")
    plain = []
    for i, item in enumerate(items):
        which = "" if len(items) == 1 else f" as item {i}" + (f" (`{names[i]}`)" if i < len(names) else "")
        if type(item) is torch.Tensor or type(item) is torch.nn.Parameter:
            t = item.detach().cpu()
        elif isinstance(item, bool | int | float):
            t = torch.tensor(item)
        elif type(item).__module__ == "numpy":
            raise OutputTypeError(f"returned a NumPy {type(item).__name__}{which}: return a torch.Tensor "
                                  "(torch.from_numpy(a) converts one; better, stay in torch throughout)")
        elif isinstance(item, torch.Tensor):  # a subclass: may override comparisons
            raise OutputTypeError(f"returned a subclass of torch.Tensor ({type(item).__name__}){which}")
        elif out is None:  # the whole result: a function that ends without `return`
            raise OutputTypeError("returned None: did you forget `return`?")
        else:
            raise OutputTypeError(f"returned a {type(item).__name__}{which}")
        plain.append(t.clone())
    return tuple(plain)


@dataclass
class Ran:
    """What came back from calling a function on a case: plain tensors, or why there are none."""

    status: str  # PASSED here means "returned"; ERROR / NOT_IMPLEMENTED otherwise
    outputs: tuple[torch.Tensor, ...] = ()
    message: str = ""
    misconception: str = ""  # id of the hint in `message`, or ""


def run_case(exercise: Exercise, fn: Callable[..., Any], case: Case) -> Ran:
    """Call `fn` on a copy of the case's inputs; never raises for anything the function does."""
    inputs = copy_inputs(case.inputs)
    try:
        with warnings.catch_warnings():  # torch's deprecation notes on student code: the hint says it better
            warnings.simplefilter("ignore")
            out = exercise.invoke(fn, inputs)
    except NotImplementedError:
        return Ran(NOT_IMPLEMENTED, message="not implemented yet")
    except Exception as err:  # the student's bug, reported, never re-raised
        message, line = _describe_exception(err)
        if isinstance(err, TypeError) and ("keyword argument" in str(err) or "positional argument" in str(err)):
            names = ", ".join(f"{k}=..." for k in case.inputs)
            message += (f"\nThe checker calls `{exercise.function}({names})`: keep the parameter names "
                        "of the exercise's stub.")
            return Ran(ERROR, message=message, misconception="error/parameter-names")
        generic = _named_exception_hint(err, line)
        typed = f"{type(err).__name__}: {err}"  # a pattern may also name the exception's type ("^MemoryError")
        specific = next(((f"{exercise.id}/error-{name}", h) for pattern, h, name in exercise.error_hints
                         if re.search(pattern, str(err)) or re.search(pattern, typed)), None)
        # `.T` on the failing line explains a shape error better than any exercise's own reading of it
        named = generic if generic is not None and generic[1] == _TRANSPOSE_ADVICE else (specific or generic)
        if named:
            message += "\nHint: " + named[1]
        return Ran(ERROR, message=message, misconception=named[0] if named else "")
    try:
        outputs = to_plain(out, len(exercise.output_names), exercise.output_names)
    except OutputTypeError as err:
        names = ", ".join(exercise.output_names)
        what = "a torch.Tensor" if len(exercise.output_names) == 1 else "a tuple of torch.Tensors"
        end = "" if str(err).endswith("?") else "."
        return Ran(ERROR, message=f"Your function should return {what} ({names}) but it {err}{end}",
                   misconception="error/output-type")
    changed = [k for k, v in inputs.items()
               if isinstance(v, torch.Tensor) and not _same(v, case.inputs[k])]
    if changed:
        return Ran(ERROR, message=f"Your function changed its input `{changed[0]}` in place. Work on a "
                                  "copy (e.g. `x = x.clone()`) or use out-of-place operations.",
                   misconception="error/changed-input")
    return Ran(PASSED, outputs=outputs)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.nan_to_num(), b.nan_to_num()))


def _describe_exception(err: BaseException) -> tuple[str, str]:
    """The exception and the student's own line that raised it (frames inside attnkit and torch are skipped).

    Returns the message and that line's source ("" when unknown), which `exception_hint` reads.
    """
    frames = [f for f in traceback.extract_tb(err.__traceback__)  # torch's own Python frames too: the line
              if not os.path.abspath(f.filename).startswith((_PACKAGE_DIR, _TORCH_DIR))]  # to fix is the student's
    where, line = "", ""
    if frames:
        f = frames[-1]
        line = (f.line or "").strip()
        code = f" — `{line}`" if line else ""
        where = f"\n(in `{f.name}`, line {f.lineno}{code})"
    return f"Your function raised {type(err).__name__}: {err}{where}", line


_DOT_T = re.compile(r"\.T\b")  # `x.T`: reverses every dimension of a batched tensor

_TRANSPOSE_ADVICE = ("`.T` reverses ALL the dimensions of a tensor with more than two (a (B, L, D) becomes "
                     "(D, L, B)); swap only the last two with `.transpose(-2, -1)` (or `.mT`).")


def _matmul_hint(m: re.Match, line: str) -> str:
    left, right = m.group(2), m.group(3)
    text = (f"A matrix product needs the left factor's last size to equal the right factor's first, but "
            f"they are {left} and {right}. ")
    if _DOT_T.search(line) and "@" in line:
        return text + _TRANSPOSE_ADVICE
    return text + ("Usual causes: a weight in nn.Linear's layout (out_features, in_features) used as `x @ W` "
                   "instead of `x @ W.T` (or `F.linear(x, W)`); keys not transposed (`q @ k.transpose(-2, -1)`); "
                   "or two weights swapped.")


def _batched_matmul_hint(m: re.Match, line: str) -> str:
    if _DOT_T.search(line):
        return _TRANSPOSE_ADVICE
    return ("In a batched product (..., L, D) @ (..., D, S) the left factor's last size must equal the right "
            "factor's second-to-last one: transpose the keys with `.transpose(-2, -1)`, and check that both "
            "factors have the same batch (and head) dimensions in the same order.")


def _broadcast_hint(m: re.Match, line: str) -> str:
    a, b, dim = m.group(1) or "?", m.group(2) or "another", m.group(3) or "?"
    if _DOT_T.search(line):
        return _TRANSPOSE_ADVICE
    if re.search(r"\.(sum|max|amax|mean|logsumexp)\(", line) and "keepdim" not in line:
        return ("A reduction without keepdim=True drops the dimension it reduces, so the result no longer lines "
                "up with the tensor it divides or is subtracted from: use e.g. `x.sum(dim=-1, keepdim=True)`, "
                "shape (..., 1), which broadcasts over the last dimension.")
    if re.search(r"transpose\(\s*(0\s*,\s*1|1\s*,\s*0)\s*\)", line):
        return ("`.transpose(0, 1)` swaps the FIRST two dimensions, the batch and the tokens of a batched tensor; "
                "count from the end to reach the last two whatever the batch: `.transpose(-2, -1)`.")
    if "masked_fill" in line or "mask" in line:
        return (f"The mask does not line up with the scores: their dimension {dim} has size {a} on one side and "
                f"{b} on the other. Give the mask the axes it lacks where they belong (a padding mask hides "
                "KEYS, the last axis: `padding[:, None, :]`), and check that it is (L, S), not (S, L).")
    return (f"Broadcasting lines dimensions up from the right, and dimension {dim} has size {a} on one side and "
            f"{b} on the other. An axis is missing (add it with `None`/`unsqueeze` where it belongs), a tensor "
            "is transposed, or L and S (queries and keys) or E and D (model and head width) are mixed up.")


def _dtype_hint(m: re.Match, line: str) -> str:
    text = m.group(0)
    if "long" in text.lower() or "int" in text.lower():
        return ("An integer tensor (from torch.arange, torch.tensor of ints, or lengths) meets a float one: "
                "give it the inputs' dtype (`dtype=x.dtype` or `.to(x.dtype)`).")
    return ("Two tensors of different float dtypes meet (float32 and float64): a float64 constant "
            "(torch.tensor(..., dtype=torch.float64), .double(), a NumPy round trip) mixed with the float32 "
            "inputs. Create constants with `dtype=x.dtype`, or stay in torch throughout.")


# (pattern of the exception's message, hint or function(match, student line) -> hint, name), first match wins;
# the hint's id is "error/<name>" ("error/dot-t" when the advice is about `.T`).
_EXCEPTION_HINTS: list[tuple[re.Pattern[str], str | Callable[[re.Match, str], str], str]] = [
    (re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)"), _matmul_hint,
     "matmul-shape"),
    (re.compile(r"Expected size for first two dimensions of batch2 tensor|size mismatch|"
                r"Expected batch2_sizes|inconsistent tensor size"), _batched_matmul_hint, "batched-matmul-shape"),
    (re.compile(r"The size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton "
                r"dimension (-?\d+)"), _broadcast_hint, "broadcast"),
    (re.compile(r"Attempting to broadcast a dimension of length (\d+)()() at|"
                r"operands could not be broadcast together|shape mismatch: value tensor of shape"), _broadcast_hint,
     "broadcast"),
    (re.compile(r"output with shape \[([\d, ]*)\] doesn't match the broadcast shape \[([\d, ]*)\]"),
     lambda m, line: (f"The result has shape [{m.group(1)}] but another operand broadcasts to [{m.group(2)}]: "
                      + ("the mask has more rows or columns than the scores (L queries x S keys): build it as "
                         "(L, S), one row per query, not (S, L)." if "mask" in line else
                         "an in-place operation (`+=`, `masked_fill_`, `out=`) cannot grow its tensor; check "
                         "which operand has the extra size (L vs S?).")), "output-shape"),
    (re.compile(r"view size is not compatible with input tensor's size and stride"),
     "`.view` can only regroup memory in the order it is laid out, and this tensor's is not (it is not "
     "contiguous: after `.transpose`/`.permute`, or as some functions return it, F.scaled_dot_product_attention "
     "among them). Use `.reshape(...)` (or `.contiguous().view(...)`); and to merge "
     "heads, move the head axis back next to D first: (B, H, L, D) -> (B, L, H, D) -> (B, L, H*D).",
     "view-not-contiguous"),
    (re.compile(r"expected m1 and m2 to have the same dtype.*|expected scalar type \w+ but found \w+|"
                r"Expected query, key, and value to have the same dtype.*|"
                r"expected both vectors to have same dtype.*|Found dtype \w+ but expected \w+"), _dtype_hint,
     "dtype-mismatch"),
    (re.compile(r"Dimension out of range"),
     "This tensor has fewer dimensions than the code assumes. The inputs may come with extra leading batch "
     "(and head) dimensions, or with none: count dimensions from the end (dim=-1 for keys, -2 for queries, "
     "`.transpose(-2, -1)`) instead of from the front.", "dimension-out-of-range"),
    (re.compile(r"shape '\[[-\d, ]*\]' is invalid for input of size \d+"),
     "The sizes given to reshape/view do not multiply to the tensor's number of entries. Read the sizes "
     "from the tensor itself (`B, L, E = x.shape`, `D = E // num_heads`), and do not mix up L and S (queries "
     "and keys) or E and D (model and head width).", "reshape-sizes"),
    (re.compile(r"Sizes of tensors must match except in dimension (-?\d+)"),
     "torch.cat joins tensors along one existing dimension and needs every OTHER dimension equal: check "
     "`dim=` (the positions of a (B, H, S, D) cache are dim 2, or -2) and the order of the axes.", "cat-sizes"),
    (re.compile(r"zero-dimensional tensor \(at position \d+\) cannot be concatenated"),
     "torch.cat joins tensors along an axis they already have, and a 0-d tensor (a single number such as "
     "`q1 @ k1`) has none: use torch.stack([...]) to make a new axis of them.", "cat-zero-dim"),
    (re.compile(r"Tensors must have same number of dimensions"),
     "torch.cat needs tensors with the same number of dimensions: add the missing axis (`unsqueeze`/`None`) "
     "first, or use torch.stack if you meant a new axis.", "cat-dims"),
    (re.compile(r"The expanded size of the tensor \((\d+)\) must match the existing size \((\d+)\)"),
     "`.expand` can only stretch dimensions of size 1 (it copies nothing). To repeat a dimension of size n, "
     "use `repeat_interleave(k, dim=...)` (each entry k times in a row) or `repeat` (the whole block k times), "
     "or insert a size-1 axis, expand it, then reshape.", "expand-size"),
    (re.compile(r"unsupported operand type\(s\) for .*torch\.return_types\.(max|min)|"
                r"'torch\.return_types\.(max|min)'|must be Tensor, not torch\.return_types\.(max|min)"),
     "`x.max(dim=...)` returns a pair (values, indices), not a tensor: use `x.max(dim=-1, keepdim=True).values` "
     "or `x.amax(dim=-1, keepdim=True)`.", "max-returns-pair"),
    (re.compile(r"stack expects each tensor to be equal size"),
     "torch.stack puts tensors side by side along a NEW axis, so they must have equal shapes. To join them "
     "along an existing axis (append positions, concatenate heads) use `torch.cat(..., dim=...)`.", "stack-sizes"),
    (re.compile(r"masked_fill_? only supports boolean masks"),
     "masked_fill needs a bool mask (it fills where the mask is True): use a comparison such as `mask == 0` "
     "or `~mask` on a bool mask, or `.bool()`.", "masked-fill-not-bool"),
    (re.compile(r"Boolean value of Tensor with more than one value is ambiguous"),
     "`if`, `and`, `or` and `not` need ONE truth value, but this tensor holds many: use the elementwise "
     "`&`, `|`, `~` and `torch.where(...)`, or `.any()`/`.all()` when you mean one answer.", "tensor-truth-value"),
    (re.compile(r"~ \(operator.invert\) is only implemented on integer and Boolean|"
                r"where expected condition to be a boolean tensor|bitwise_not.*not implemented for 'Float'"),
     "A mask must be a bool tensor here (True = may attend): build it with a comparison (e.g. `positions < "
     "lengths[:, None]`) or convert with `.bool()`; `~` only negates a bool mask.", "mask-not-bool"),
    (re.compile(r"einsum\(\): .*"),
     "The einsum subscripts do not match the operands: each letter must name a dimension of the same size in "
     "every operand (write the shapes next to the subscripts, e.g. 'bhld,bhsd->bhls').", "einsum-subscripts"),
    (re.compile(r"must have at least 2 dimensions"),
     "tril/triu work on a matrix: build the (L, S) mask from `torch.ones(L, S, dtype=torch.bool)`.",
     "tril-needs-matrix"),
    (re.compile(r"number of dimensions in the tensor input does not match the length of the desired ordering"),
     "`.permute` needs one index for every dimension (4 for (B, H, L, D)); to swap two dimensions use "
     "`.transpose(i, j)`.", "permute-dims"),
    (re.compile(r"does not require grad and does not have a grad_fn|"
                r"element 0 of tensors does not require grad"),
     "Your result is cut off from the inputs in the autograd graph (.detach(), .data, .item(), NumPy or a "
     "new tensor built from values): compute it with torch operations on the inputs so that it can train.", "no-grad"),
    (re.compile(r"modified by an inplace operation|leaf Variable that requires grad is being used in an in-place"),
     "An in-place operation (`x[...] = `, `+=`, `masked_fill_`, `.copy_`) overwrote a value autograd needs: "
     "use the out-of-place form (`masked_fill`, `x = x + ...`).", "in-place-autograd"),
    (re.compile(r"not enough values to unpack \(expected (\d+), got (\d+)\)|too many values to unpack"),
     "Unpacking `x.shape` into names assumes a number of dimensions the input does not have: the inputs may "
     "have more (or fewer) leading dimensions; read only what you need from the end (`L, E = x.shape[-2:]`).",
     "unpack-shape"),
    (re.compile(r"softmax\(\) missing 1 required positional argument|softmax\(\) received an invalid combination"),
     "Give the softmax its dimension: `torch.softmax(scores, dim=-1)` normalises over the keys.", "softmax-no-dim"),
    (re.compile(r"index -?\d+ is out of bounds for dimension|out of bounds"),
     "An index past the end of a dimension: positions run 0 .. n - 1; check L vs S and off-by-one limits.",
     "index-out-of-range"),
    (re.compile(r"NoneType"),
     lambda m, line: ("A value that may be None was used as a tensor. An optional mask is None when a case passes "
                      "no mask (the default): apply it only `if attn_mask is not None:`." if "mask" in line else
                      "A None was used as a tensor or a function: a function that returns nothing (no `return`), "
                      "an optional argument left at None, or a name bound to None earlier in the notebook."),
     "none-value"),
    (re.compile(r"Expected attn_mask dtype to be bool or float"),
     "Give F.scaled_dot_product_attention a bool mask (True = may attend) or a float mask of -inf/0 added to "
     "the scores.", "sdpa-mask-dtype"),
]


# The ids of the hints that are not an exercise's own (see `Exercise.misconception_ids` for those).
GENERIC_IDS = frozenset(
    [f"error/{name}" for _, _, name in _EXCEPTION_HINTS]
    + ["error/dot-t", "error/parameter-names", "error/output-type", "error/changed-input", "error/keepdim",
       "error/transpose-0-1", "error/mask-broadcast"]
    + [f"generic/{name}" for name in ("wrong-axis", "transposed", "swapped-dims", "raw-scores", "inverted-mask",
                                      "mask-leak", "unnormalised", "wrong-scale", "output-count", "bool-mask-dtype",
                                      "integer-dtype", "missing-dim", "stack-vs-cat", "dot-t", "wrong-reshape",
                                      "scaled-values", "scrambled-values")])


def exception_hint(err: BaseException, line: str = "") -> str | None:
    """A likely cause of a PyTorch (or Python) exception raised inside a student's function, or None.

    `line` is the student's source line that raised it: `.T` on it changes the advice.
    """
    named = _named_exception_hint(err, line)
    return named[1] if named else None


def _named_exception_hint(err: BaseException, line: str = "") -> tuple[str, str] | None:
    """`exception_hint` with its id: ("error/matmul-shape", hint), or None."""
    text = str(err)
    for pattern, hint, name in _EXCEPTION_HINTS:
        m = pattern.search(text)
        if m:
            hint = hint(m, line) if callable(hint) else hint
            if hint.endswith(_TRANSPOSE_ADVICE):
                return "error/dot-t", hint
            variant = next((v for prefix, v in _HINT_VARIANTS if hint.startswith(prefix)), name)
            return f"error/{variant}", hint
    return None


# Hints of one exception family that name another mistake: (start of the hint, name).
_HINT_VARIANTS = [("A reduction without keepdim=True", "keepdim"), ("`.transpose(0, 1)` swaps", "transpose-0-1"),
                  ("The mask does not line up", "mask-broadcast")]


# ---------------------------------------------------------------------------------------------------
# Judging: compare plain outputs with the reference's and explain the difference.
# ---------------------------------------------------------------------------------------------------


def describe_inputs(inputs: dict[str, Any]) -> str:
    """One line listing each input with its shape and dtype (or its value if small and plain)."""
    parts = []
    for k, v in inputs.items():
        if isinstance(v, torch.Tensor):
            dtype = str(v.dtype).replace("torch.", "")
            parts.append(f"{k} {shape_str(v.shape)} {dtype}")
        else:
            text = repr(v)
            parts.append(f"{k}={text if len(text) <= 40 else text[:37] + '...'}")
    return "inputs: " + ", ".join(parts)


def judge(exercise: Exercise, case: Case, expected: tuple[torch.Tensor, ...], ran: Ran) -> CaseResult:
    """Compare what the student's function returned with the reference's, and say what is wrong."""
    inputs_line = exercise.describe(case.inputs) if exercise.describe is not None else describe_inputs(case.inputs)
    if ran.status != PASSED:
        return CaseResult(case, ran.status, ran.message + "\n" + inputs_line,
                          ran.misconception if ran.status == ERROR else "")
    masked = any(isinstance(v, torch.Tensor) and v.dtype == torch.bool for v in case.inputs.values())
    problem = compare(exercise, expected, ran.outputs, masked=masked)
    if problem is None:
        return CaseResult(case, PASSED)
    named = _misconception(exercise, case, expected, ran.outputs)
    message = problem + "\n" + inputs_line
    if named:
        message += "\nHint: " + named[1]
    return CaseResult(case, FAILED, message, named[0] if named else "", ran.outputs)


def compare(exercise: Exercise, expected: Sequence[torch.Tensor], actual: Sequence[torch.Tensor], *,
            masked: bool = False) -> str | None:
    """None if every output matches; else a message naming the output and expected vs actual.

    `masked` says the inputs hold a boolean mask, which makes a fully masked row the likelier cause of NaN.
    """
    names = exercise.output_names
    if len(actual) != len(expected):
        return (f"Expected {len(expected)} outputs ({', '.join(names)}) but got {len(actual)}.")
    notes = {n: note for n, note in zip(names, exercise.output_notes, strict=False) if note}
    for name, want, got in zip(names, expected, actual, strict=True):
        if tuple(got.shape) != tuple(want.shape):
            msg = f"Expected `{name}` shape to be {shape_str(want.shape)} but got {shape_str(got.shape)}."
            if sorted(got.shape) == sorted(want.shape):
                msg += " Same sizes in another order: a transpose or a permute in the wrong place?"
            return msg
        if want.dtype == torch.bool or got.dtype == torch.bool:
            if want.dtype != got.dtype:
                return f"Expected `{name}` to have dtype {want.dtype} but got {got.dtype}."
            if not torch.equal(want, got):
                return _first_difference(name, want, got, "differs from the expected mask", notes.get(name, ""))
            continue
        if not (want.is_floating_point() or want.is_complex()):
            if got.is_floating_point() or got.is_complex():
                return f"Expected `{name}` to have dtype {want.dtype} but got {got.dtype}."
            if not torch.equal(want, got.to(want.dtype)):
                return _first_difference(name, want, got, "differs from the expected values", notes.get(name, ""))
            continue
        if got.dtype != want.dtype and got.dim() > 0:
            return (f"Expected `{name}` to have dtype {want.dtype} (as the inputs) but got {got.dtype}: a "
                    "NumPy round trip or a float64 constant? Keep the inputs' dtype (e.g. torch.zeros(..., "
                    "dtype=x.dtype)).")
        got_f, want_f = got.double(), want.double()
        nan_got = torch.isnan(got_f) & ~torch.isnan(want_f)
        if nan_got.any():
            idx = tuple(int(i) for i in nan_got.nonzero()[0])
            causes = ["a row whose every score is -inf (0 / 0: a fully masked row)",
                      "exp() overflowing (inf / inf: subtract the row maximum first)"]
            first, second = causes if masked else causes[::-1]
            where = exercise.nan_causes or f"{first} or from {second}"
            return (f"`{name}` contains NaN at {int(nan_got.sum())} position(s), e.g. at index {idx}, where "
                    f"the expected value is {float(want_f[idx]):.4g}. NaN comes from {where}.")
        if not torch.allclose(got_f, want_f, atol=exercise.atol, rtol=exercise.rtol, equal_nan=True):
            return _first_difference(name, want_f, got_f, "differs from the expected values", notes.get(name, ""))
    return None


def _fmt(t: torch.Tensor, start: int = 0) -> str:
    """The values of a row from `start` on, at most 8 (12 for booleans), with "..." where some are left out."""
    values = t.flatten().tolist()
    limit = 12 if t.dtype == torch.bool else 8
    shown = values[start:start + limit]
    text = ", ".join(("T" if v else "F") if t.dtype == torch.bool else _num(v) for v in shown)
    before = "..., " if start > 0 else ""
    more = ", ..." if len(values) > start + limit else ""
    return f"[{before}{text}{more}]"


def _num(v: float | int) -> str:
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.4g}"
    return str(v)


def _first_difference(name: str, want: torch.Tensor, got: torch.Tensor, what: str, note: str = "") -> str:
    """Point at the first row that differs and show it both ways, around its first differing entry."""
    shown = f"`{name}` ({note})" if note else f"`{name}`"
    if want.dim() == 0:
        return f"{shown} {what}: expected {_num(want.item())}, got {_num(got.item())}."
    bad = ~torch.isclose(got.double(), want.double(), atol=1e-5, rtol=1e-4, equal_nan=True) \
        if want.dtype != torch.bool else want != got
    if not bool(bad.any()):  # equal values that compare unequal (another dtype): say so, never crash
        return f"{shown} {what} (expected dtype {want.dtype}, got {got.dtype})."
    idx = tuple(int(i) for i in bad.nonzero()[0])
    row, col = idx[:-1], idx[-1]
    n, limit = want.shape[-1], (12 if want.dtype == torch.bool else 8)
    # a long row is shown from two entries before its first difference, so the difference is always in view
    start = 0 if n <= limit or col < limit - 2 else min(col - 2, n - limit)
    cols = ":" if start == 0 else f"{start}:{min(start + limit, n)}"
    label = f"{name}[{', '.join(map(str, row))}{', ' if row else ''}{cols}]"
    lines = [f"{shown} {what} ({int(bad.sum())} of {bad.numel()} entries differ; the first at index "
             f"{idx if len(idx) > 1 else col}).",
             f"expected {label} = {_fmt(want[row], start)}",
             f"got      {label} = {_fmt(got[row], start)}"]
    if want.is_floating_point():
        infinite = bad & (torch.isinf(want) | torch.isinf(got))
        if bool(infinite.any()):  # a difference with an infinity is no number: show the two values
            at = tuple(int(i) for i in infinite.nonzero()[0])
            lines[0] = (lines[0][:-2] + f"; at index {at} expected {_num(float(want[at]))}, "
                        f"got {_num(float(got[at]))}).")
        else:
            largest = float((got - want)[bad].abs().nan_to_num(math.inf).max())
            lines[0] = lines[0][:-2] + f"; largest difference {largest:.3g})."
    return "\n".join(lines)


def _misconception_hint(exercise: Exercise, case: Case, expected: Sequence[torch.Tensor],
                        actual: tuple[torch.Tensor, ...]) -> str | None:
    """The hint of the first known misconception whose output equals the student's."""
    named = _misconception(exercise, case, expected, actual)
    return named[1] if named else None


def _misconception(exercise: Exercise, case: Case, expected: Sequence[torch.Tensor],
                   actual: tuple[torch.Tensor, ...]) -> tuple[str, str] | None:
    """`_misconception_hint` with its id: ("1.2/divided-by-d-k", hint), ("generic/wrong-axis", hint), or None."""
    for m in exercise.misconceptions:
        try:
            wrong = to_plain(exercise.invoke(m.wrong, copy_inputs(case.inputs)), len(exercise.output_names))
        except Exception:  # a misconception that does not apply to these inputs
            continue
        if compare(exercise, wrong, actual) is None:
            return f"{exercise.id}/{m.name}", m.hint
    # Generic: weights normalised along the wrong dimension.
    for name, got, want in zip(exercise.output_names, actual, expected, strict=False):
        hint = _wrong_axis_hint(name, got, want)
        if hint:
            return "generic/wrong-axis", hint
    # Generic: the right values, transposed.
    for got, want in zip(actual, expected, strict=False):
        if got.dim() >= 2 and want.dim() >= 2 and got.shape == want.transpose(-2, -1).shape \
                and got.dtype == want.dtype and torch.allclose(got.double(), want.transpose(-2, -1).double(),
                                                               atol=exercise.atol, rtol=exercise.rtol):
            return "generic/transposed", "Your values are right but transposed: swap the last two dimensions."
    # Generic: the right values with two other dimensions swapped (e.g. (L, B, E) returned as (B, L, E)).
    for got, want in zip(actual, expected, strict=False):
        if got.dim() >= 2 and got.dtype == want.dtype and got.shape != want.shape:
            for i in range(want.dim()):
                for j in range(i + 1, want.dim()):
                    swapped = want.transpose(i, j)
                    if got.shape == swapped.shape and torch.allclose(got.double(), swapped.double(),
                                                                     atol=exercise.atol, rtol=exercise.rtol):
                        return "generic/swapped-dims", (
                            f"Your values are right but dimensions {i} and {j} are swapped: "
                            f"`.transpose({i}, {j})` (a layout such as (L, B, E) vs (B, L, E) not converted "
                            "back?).")
    return _named_value_hint(exercise, case, expected, actual)


def _sizes(inputs: dict[str, Any]) -> list[int]:
    """The sizes a formula could have used: every dimension of every input tensor, and plain ints."""
    found: set[int] = set()
    for v in inputs.values():
        if isinstance(v, torch.Tensor):
            found.update(int(n) for n in v.shape)
        elif isinstance(v, int) and not isinstance(v, bool):
            found.add(v)
    return sorted(n for n in found if n > 1)


def _name_factor(c: float, sizes: Sequence[int]) -> str:
    """' (= sqrt(4))' when the factor c is a simple expression of one of the inputs' sizes, else ''."""
    for n in sizes:
        for expr, value in ((f"{n}", n), (f"sqrt({n})", math.sqrt(n)), (f"1/{n}", 1 / n),
                            (f"1/sqrt({n})", 1 / math.sqrt(n)), (f"{n}/2", n / 2), (f"2/{n}", 2 / n),
                            (f"sqrt({n})/{n}", math.sqrt(n) / n), (f"{n}/sqrt(2)", n / math.sqrt(2))):
            if abs(c - value) <= 1e-3 * abs(value):
                return f" (= {expr})"
    for a in sizes:  # a ratio of two widths, e.g. sqrt(E)/sqrt(D)
        for b in sizes:
            if a != b and abs(c - math.sqrt(a / b)) <= 1e-3 * math.sqrt(a / b):
                return f" (= sqrt({a}/{b}))"
    return ""


_PRECEDENCE = ("Check the formula's precedence: `x / d ** 1/2` is (x / d) / 2, and `a / b * c` is (a / b) * c, "
               "not a / (b * c)")


def _is_weights(want: torch.Tensor) -> bool:
    """Attention weights: non-negative, each row (last dim) summing to 1 or, fully masked, to 0."""
    if not want.is_floating_point() or want.dim() < 1 or want.shape[-1] < 2 or bool((want < 0).any()):
        return False
    rows = want.double().sum(dim=-1)
    return bool((((rows - 1).abs() < 1e-4) | (rows.abs() < 1e-6)).all()) and bool(((rows - 1).abs() < 1e-4).any())


def _weights_hint(name: str, got: torch.Tensor, want: torch.Tensor,
                  sizes: Sequence[int]) -> tuple[str, str] | None:
    """Name what is wrong with attention weights: raw scores, unnormalised, a mask, or the scale (id, hint)."""
    g, w = got.double(), want.double()
    if bool((g < -1e-6).any()):
        return "generic/raw-scores", (
            f"Your `{name}` have negative entries, so they are not attention weights yet: they look like "
            "the scores before the softmax. Turn each row into a distribution with "
            "torch.softmax(scores, dim=-1).")
    live = (w.sum(dim=-1) - 1).abs() < 1e-4  # rows with at least one visible key
    blocked, got_zero = w == 0, g.abs() < 1e-12
    leak = blocked & ~got_zero & live[..., None]
    if bool(leak.any()):
        starved = ~blocked & got_zero & live[..., None]
        if bool(starved.any()) and int(starved.sum()) >= int((~blocked & live[..., None]).sum()) // 2:
            return "generic/inverted-mask", (
                f"Your `{name}` are zero where they should be positive and positive where they should be "
                "zero: the mask is inverted. Here True means *may attend* (as in F.scaled_dot_product_"
                "attention), and masked_fill fills where ITS mask is True, so fill where the mask is False "
                "(`~mask`).")
        return "generic/mask-leak", (
            f"Your `{name}` give weight to keys that must get exactly 0 ({int(leak.sum())} entries: masked, "
            "padded or future keys). Their scores must be -inf BEFORE the softmax: filling them with 0 (or "
            "leaving them) still gives them a share, since exp(0) = 1; also check that the mask covers the "
            "keys (the last axis), not the queries.")
    sums = g.sum(dim=-1)
    off = live & ((sums - 1).abs() > 1e-4)
    if bool(off.any()):
        idx = tuple(int(i) for i in off.nonzero()[0])
        return "generic/unnormalised", (
            f"The rows of your `{name}` do not sum to 1 (row {idx} sums to {float(sums[idx]):.4g}): they are "
            "not normalised. Divide exp(scores - max) by its row sum, or use torch.softmax(scores, dim=-1); "
            "zeroing weights after the softmax also breaks the sum (mask the scores before it).")
    # Same support: is log(got) a multiple of log(want), row by row (a softmax of wrongly scaled scores)?
    both = (g > 1e-30) & (w > 1e-30) & live[..., None]
    if bool(both.any()) and bool((both == (~blocked & live[..., None])).all()):
        lg = torch.where(both, g.log(), torch.zeros_like(g))
        lw = torch.where(both, w.log(), torch.zeros_like(w))
        count = both.sum(dim=-1, keepdim=True).clamp(min=1)
        lg = torch.where(both, lg - lg.sum(dim=-1, keepdim=True) / count, torch.zeros_like(lg))
        lw = torch.where(both, lw - lw.sum(dim=-1, keepdim=True) / count, torch.zeros_like(lw))
        denom = float((lw * lw).sum())
        if denom > 1e-12:
            c = float((lg * lw).sum()) / denom
            if abs(c - 1) > 1e-3 and float(((lg - c * lw) ** 2).sum()) < 1e-6 * max(denom, 1.0):
                return "generic/wrong-scale", (
                    f"Your `{name}` are a softmax of the right scores multiplied by {c:.4g}"
                    f"{_name_factor(c, sizes)}: the scale is wrong. Divide q·k by sqrt(d_k), where d_k is "
                    "the width of the queries and keys (of ONE head in multi-head attention, D = E / H). "
                    + _PRECEDENCE + ".")
    return None


def value_hint(exercise: Exercise, case: Case, expected: Sequence[torch.Tensor],
               actual: Sequence[torch.Tensor]) -> str | None:
    """A hint from the shape of the mistake alone, for answers no named misconception matches.

    Tries, per output: stack vs cat and `.T` (from the shapes); raw scores, a leaking or inverted mask,
    unnormalised rows and a wrong scale (for attention weights); a constant factor; right values in
    the wrong places.
    """
    named = _named_value_hint(exercise, case, expected, actual)
    return named[1] if named else None


def _named_value_hint(exercise: Exercise, case: Case, expected: Sequence[torch.Tensor],
                      actual: Sequence[torch.Tensor]) -> tuple[str, str] | None:
    """`value_hint` with its id: ("generic/wrong-scale", hint), or None."""
    sizes = _sizes(case.inputs)
    if len(actual) != len(expected):
        return "generic/output-count", (
            f"Return a tuple of {len(expected)} tensors in this order: {', '.join(exercise.output_names)} "
            "(e.g. `return " + ", ".join(exercise.output_names) + "`), not one tensor or a stack of them.") \
            if all(n.isidentifier() for n in exercise.output_names) else \
            f"Return a tuple of {len(expected)} tensors: {', '.join(exercise.output_names)}."
    for name, want, got in zip(exercise.output_names, expected, actual, strict=False):
        if want.dtype == torch.bool and got.dtype != torch.bool:
            other = ("A float mask means something else to PyTorch: it is ADDED to the scores."
                     if got.is_floating_point() else
                     f"A mask of dtype {str(got.dtype).replace('torch.', '')} is not a bool mask: PyTorch refuses "
                     "it or reads it as numbers, not as may / may not attend.")
            return "generic/bool-mask-dtype", (
                f"`{name}` must be a bool tensor (True = may attend): build it with dtype=torch.bool or from "
                "a comparison (`<`, `>=`), or convert with `.bool()`. " + other)
        if not (want.is_floating_point() or want.dtype == torch.bool) and got.is_floating_point():
            return "generic/integer-dtype", (
                f"`{name}` holds integer values (positions, token ids): return an integer tensor, e.g. "
                "torch.arange(...) without a float dtype, or `.long()`.")
        if tuple(got.shape) != tuple(want.shape):
            if got.dim() < want.dim() and got.numel() < want.numel():
                return "generic/missing-dim", (
                    f"Your `{name}` {shape_str(got.shape)} has fewer dimensions than expected "
                    f"{shape_str(want.shape)}: two tensors were combined entry by entry where one of them "
                    "needed its own axis to broadcast into a grid (e.g. positions[None, :] < lengths[:, None] "
                    "gives (B, S)), or a reduction dropped a dimension (keepdim=True keeps it).")
            if got.dim() == want.dim() + 1 and got.numel() == want.numel():
                return "generic/stack-vs-cat", (
                    f"Your `{name}` has one dimension more than expected and the same number of entries: "
                    "torch.stack (which adds a NEW axis) where torch.cat (which joins along an existing "
                    "one) was meant?")
            if got.dim() > 2 and tuple(got.shape) == tuple(reversed(want.shape)):
                return "generic/dot-t", "Your shape is the expected one reversed: " + _TRANSPOSE_ADVICE
            if got.dim() == want.dim() and got.numel() == want.numel():
                return "generic/wrong-reshape", (
                    f"Your `{name}` has the right number of entries in another shape: a reshape/view to "
                    "the wrong sizes, or an axis moved to the wrong place. Write the shape after every line "
                    "(e.g. `# (B, H, L, D)`) and compare.")
            continue
        if not (want.is_floating_point() and got.is_floating_point()) or bool(torch.isnan(got).any()):
            continue
        if torch.allclose(got.double(), want.double(), atol=exercise.atol, rtol=exercise.rtol):
            continue  # this output is right: the mistake is in another one
        if _is_weights(want):
            hint = _weights_hint(name, got, want, sizes)
            if hint:
                return hint
        g, w = got.double().flatten(), want.double().flatten()
        if float((w * w).sum()) > 1e-12:
            c = float((g * w).sum() / (w * w).sum())
            if (math.isfinite(c) and abs(c - 1) > 1e-3 and abs(c) > 1e-6 and bool(torch.isfinite(g).all())
                    and torch.allclose(g, c * w, atol=1e-5, rtol=1e-4)):  # -inf everywhere is no scale mistake
                return "generic/scaled-values", (
                    f"Your `{name}` are the expected values multiplied by {c:.4g}{_name_factor(c, sizes)}: "
                    "a scale factor is off (the scale is 1/sqrt(d_k), d_k = the query/key width). "
                    + _PRECEDENCE + ".")
        if want.numel() > 1 and torch.allclose(g.sort().values, w.sort().values, atol=1e-5, rtol=1e-4):
            return "generic/scrambled-values", (
                f"Your `{name}` holds the right numbers in the wrong places: a reshape/view that mixes "
                "axes. Move axes with transpose/permute BEFORE reshaping (split: (B, L, E) -> (B, L, H, D) -> "
                "(B, H, L, D); merge: the reverse), and check the order of the axes.")
    return None


def _wrong_axis_hint(name: str, got: torch.Tensor, want: torch.Tensor) -> str | None:
    """If `want` has rows summing to 1 over the last dim and `got` sums to 1 over another dim, say so."""
    if not (want.is_floating_point() and got.is_floating_point()) or got.shape != want.shape or want.dim() < 2:
        return None
    rows = want.double().sum(dim=-1)
    if not torch.allclose(rows[rows > 0.5], torch.ones(()).double(), atol=1e-4):
        return None  # not attention weights
    if torch.allclose(got.double().sum(dim=-1)[rows > 0.5], torch.ones(()).double(), atol=1e-4):
        return None  # normalised over the keys already: some other mistake
    for dim in range(want.dim() - 1):
        if torch.allclose(got.double().sum(dim=dim), torch.ones(()).double(), atol=1e-4):
            axis = "the queries' axis, " if dim == want.dim() - 2 else ""
            return (f"Your `{name}` {shape_str(got.shape)} sum to 1 along its dimension {dim} ({axis}not the "
                    "keys'): normalise the scores over the keys, the last dimension (dim=-1), so that each "
                    "query's weights sum to 1.")
    return None


def expected_outputs(exercise: Exercise, case: Case) -> tuple[torch.Tensor, ...]:
    """The reference's outputs on a case (computed by the checker, never by the student's process)."""
    return to_plain(exercise.invoke(exercise.reference, copy_inputs(case.inputs)), len(exercise.output_names))


def run_exercise(exercise: Exercise, fn: Callable[..., Any] | None, *, seed: int | None = None,
                 hidden: bool = False) -> ExerciseReport:
    """Run every case in this process and judge it: the self-check, and the grader's tests."""
    report = ExerciseReport(exercise)
    if fn is None or not callable(fn):
        report.status_override = "missing"
        report.message_override = (f"no function named `{exercise.function}` was found. Define it with "
                                   f"`def {exercise.function}(...)` in the exercise cell and run that cell.")
        return report
    for case in exercise.cases(seed, hidden=hidden):
        ran = run_case(exercise, fn, case)
        report.results.append(judge(exercise, case, expected_outputs(exercise, case), ran))
        if ran.status == NOT_IMPLEMENTED:
            break  # one "not implemented yet" says it all
    _keep_hints_that_explain_every_case(exercise, report)
    return report


def _explains(exercise: Exercise, misconception: Misconception, result: CaseResult) -> bool:
    """Whether the student's outputs on this failing case are what `misconception` returns."""
    try:
        wrong = to_plain(exercise.invoke(misconception.wrong, copy_inputs(result.case.inputs)),
                         len(exercise.output_names))
    except Exception:  # a misconception that does not apply to these inputs
        return False
    return compare(exercise, wrong, result.outputs) is None


def _keep_hints_that_explain_every_case(exercise: Exercise, report: ExerciseReport) -> None:
    """Prefer a named mistake that explains every failing public case, so one coincidence cannot mislead.

    When the cases' hints differ (one case matched by coincidence, another by nothing), the first misconception
    whose output equals the student's on every failing public case is named on all of them. If none does, each
    case keeps its own hint: a misconception's model may not cover every input (masks giving NaN, say), so a
    case it does not explain is no proof that it is wrong.
    """
    failing = [r for r in report.results if r.status == FAILED and not r.case.hidden]
    own = {f"{exercise.id}/{m.name}": m for m in exercise.misconceptions}
    named = {r.misconception for r in failing if r.misconception in own}
    if len(failing) < 2 or not named or {r.misconception for r in failing} == named and len(named) == 1:
        return
    common = next((m for m in exercise.misconceptions if all(_explains(exercise, m, r) for r in failing)), None)
    if common is None:
        return
    for r in failing:
        r.message = r.message.split("\nHint: ")[0] + "\nHint: " + common.hint
        r.misconception = f"{exercise.id}/{common.name}"
