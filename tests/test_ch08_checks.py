"""Chapter 8's checks beyond the common ones of tests/test_exercises.py: what the chapter promises, and
the library's own versions passing the exercises."""

import torch

from attnkit.checks import get_exercise, run_exercise
from attnkit.checks.ch08_serving import EXERCISES
from attnkit.checks.core import PASSED


def test_the_exercises_cover_what_the_chapter_promises():
    ids = {ex.id: ex.function for ex in EXERCISES}
    assert ids == {"8.1": "gather_paged_kv", "8.2": "BlockManager", "8.3": "verify_draft"}
    names = {ex.id: {m.name for m in ex.misconceptions} for ex in EXERCISES}
    assert {"index-offset-swapped", "last-partial-block"} <= names["8.1"]
    assert {"blocks-plus-one", "blocks-not-returned", "freed-shared-block", "partial-allocation"} <= names["8.2"]
    assert {"accepts-past-mismatch", "no-bonus-token", "off-by-one-alignment"} <= names["8.3"]


def test_library_versions_pass_the_exercises():
    from attnkit import gather_paged_kv, verify_draft

    for ex_id, fn in (("8.1", gather_paged_kv), ("8.3", verify_draft)):
        report = run_exercise(get_exercise(ex_id), fn, hidden=True, seed=1)
        assert report.status == PASSED, report.render(show_hidden=True)


def test_the_block_manager_reference_passes_hidden_cases_and_the_library_allocator_agrees():
    from attnkit import BlockAllocator

    ex = get_exercise("8.2")
    assert run_exercise(ex, ex.reference, hidden=True, seed=3).status == PASSED

    class OnTheLibrary:  # the same bookkeeping on attnkit.BlockAllocator
        def __init__(self, num_blocks, block_size):
            self.allocator, self.block_size = BlockAllocator(num_blocks), block_size
            self.tables, self.lengths = {}, {}

        @property
        def free_blocks(self):
            return [None] * self.allocator.num_free

        def fork(self, parent, child):
            self.tables[child], self.lengths[child] = list(self.tables[parent]), self.lengths[parent]
            for b in self.tables[child]:
                self.allocator.share(b)

        def allocate(self, seq, n_tokens):
            table = self.tables.setdefault(seq, [])
            total = self.lengths.get(seq, 0) + n_tokens
            table += self.allocator.allocate(-(-total // self.block_size) - len(table))
            self.lengths[seq] = total

        def free(self, seq):
            for b in self.tables.pop(seq):
                self.allocator.free(b)
            del self.lengths[seq]

    assert run_exercise(ex, OnTheLibrary, hidden=True, seed=3).status == PASSED


def test_an_untouched_stub_is_reported_as_not_implemented():
    class Stub:
        def __init__(self, num_blocks, block_size):
            self.free_blocks, self.tables, self.lengths = list(range(num_blocks)), {}, {}

        def fork(self, parent, child):
            raise NotImplementedError

        def allocate(self, seq, n_tokens):
            raise NotImplementedError

        def free(self, seq):
            raise NotImplementedError

    assert "not implemented yet" in run_exercise(get_exercise("8.2"), Stub).render()
    assert torch.get_default_dtype() == torch.float32


def test_out_of_blocks_with_another_exception_type_is_explained():
    ex = get_exercise("8.2")

    class WrongError(ex.reference):
        def allocate(self, seq, n_tokens):
            try:
                super().allocate(seq, n_tokens)
            except RuntimeError as err:
                raise MemoryError(str(err)) from None

    report = run_exercise(ex, WrongError)
    assert report.status != PASSED and "raise RuntimeError" in report.render(), report.render()
