"""End-to-end: the chapters' widgets really work in JupyterLab, as a student uses them (nbval cannot see a widget).

One JupyterLab server per module (127.0.0.1, random port and token, serving a temporary copy of chapters/
without outputs), one headless Chromium (Debian's /usr/bin/chromium through Playwright). Each test opens a
notebook, runs Run > Run All Cells, checks that no cell shows a traceback, then operates every slider (arrow
keys on its handle), checkbox, dropdown and toggle-buttons control in turn and checks that a plot or an
output changed each time, and finally that no widget callback raised (in an Output or in JupyterLab's log
console). Screenshots go to tests/artifacts/ (git-ignored): the control's output area before and after each
change, the whole page at the end and on any failure; the assertion messages name them.

test_harness_selftest runs the same machinery on a small notebook it writes itself (one control of each
kind redrawing a matplotlib plot, an inert slider, two sliders whose callbacks raise), so the harness is
checked, and shown able to fail, even while chapters change.

Without chromium or playwright these tests skip, unless CI is set: then they fail, because CI must run them.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import browser_helpers as bh
import pytest

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = REPO / "chapters"
SELFTEST = "_browser_harness_selftest.ipynb"


def _has_widgets(nb_path: Path) -> bool:
    try:
        cells = json.loads(nb_path.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return False
    code = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    # ipywidgets used directly, or one of attnkit.widgets' explorers (`temperature_explorer(...)`).
    return bool(re.search(r"ipywidgets|\bwidgets\b|\binteract(ive)?\b|Slider|_explorer\(", code))


WIDGET_CHAPTERS = sorted(p.name for p in CHAPTERS.glob("[0-9]*.ipynb") if _has_widgets(p))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = bh.browser_unavailable_reason()
    if reason:
        bh.skip_or_fail(reason)
    work = tmp_path_factory.mktemp("browser")
    root = work / "notebooks"
    # A copy, so the browser (autosave) never touches the repo's notebooks.
    shutil.copytree(CHAPTERS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for nb in root.glob("*.ipynb"):
        bh.strip_outputs(nb)
    bh.write_fixture_notebook(root / SELFTEST)
    server = bh.LabServer(root, work).start()
    try:
        yield server
    finally:
        server.stop()
    left = server.leftover_processes()
    assert not left, f"processes of the test's jupyter server are still running after teardown: {left}"


@pytest.fixture(scope="module")
def browser_context(lab):
    """One Chromium and one context for the module: JupyterLab's scripts load from cache after the first page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=bh.CHROMIUM, headless=True, args=bh.CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=bh.VIEWPORT)
            context.set_default_timeout(30_000)
            yield context
        finally:
            browser.close()


@pytest.fixture
def page(browser_context):
    # Kernels stay up until the module ends (a few idle kernels cost little memory; shutting one down costs
    # a second or two): the `lab` fixture shuts them all down at once.
    pg = browser_context.new_page()
    try:
        yield pg
    finally:
        pg.close()


def _operate_and_check(page, kind: str, control, name: str, shots: dict) -> tuple[str, str, str] | None:
    """Operate `control` and wait for the outputs to change; returns (action, value before, value after).

    None if the control cannot change (disabled, a one-value slider). Saves <name>-before.png and
    <name>-after.png (the control's output area) to tests/artifacts/; `shots` maps an output area to its
    latest screenshot, which serves as the next control's "before" there.
    """
    area = bh.output_area_of(control)
    area_id = bh.element_id(area)
    label = bh.control_description(control)
    before_png = shots.get(area_id) or bh.screenshot(page, f"{name}-before", element=area)
    before = bh.outputs_fingerprint(page)
    value_before = bh.control_value(kind, control)
    action = bh.operate(kind, control)
    if action is None:
        return None
    after = bh.wait_for_change(page, before)
    value_after = bh.control_value(kind, control)
    after_png = shots[area_id] = bh.screenshot(page, f"{name}-after", element=area)
    assert value_after != value_before, (
        f"{kind} {label!r} did not change: {action} left it at {value_before!r} "
        f"(screenshots: {before_png}, {after_png})"
    )
    assert after is not None, (
        f"{kind} {label!r}: {action} changed it from {value_before!r} to {value_after!r} but no plot or output "
        f"changed (screenshots: {before_png}, {after_png})"
    )
    return action, value_before, value_after


def _wait_for_errors(read, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while not (errors := read()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return errors


def _slug(text: str) -> str:
    return re.sub(r"\W+", "_", text).strip("_") or "control"


def test_harness_selftest(lab, page):
    """The harness on a notebook it writes: one control of each kind that redraws, one that does nothing, two
    that raise."""
    bh.clear_artifacts("selftest")
    t0 = time.monotonic()
    with bh.inspectable(page, "selftest", lab):
        bh.open_notebook(page, lab, SELFTEST)
        t_open = time.monotonic() - t0
        t_run = bh.run_all_cells(page)
        assert bh.errors_in_notebook(page) == [], "the self-test notebook shows a traceback right after Run All"
        found = bh.controls(page)
        labels = [(kind, bh.control_description(c)) for kind, c in found]
        assert labels == [
            ("slider", "temperature"), ("checkbox", "negate scores"), ("dropdown", "colour"),
            ("toggle buttons", "draw as"), ("slider", "inert"), ("slider", "broken"), ("slider", "loud"),
        ], labels  # fmt: skip

        img = page.locator(f"{bh.NOTEBOOK} .widget-output img")
        src_before = img.first.get_attribute("src")
        shots = {}
        done = [_operate_and_check(page, kind, c, f"selftest-{i}-{_slug(label)}", shots)
                for i, ((kind, c), (_, label)) in enumerate(zip(found[:4], labels[:4], strict=True))]  # fmt: skip
        assert [d[1:] for d in done] == [
            ("1.00", "1.90"), ("False", "True"), ("tab:blue", "tab:orange"), ("bars", "line")
        ], done  # fmt: skip
        assert img.count() == 1, "clear_output(wait=True) should leave exactly one plot"
        assert img.first.get_attribute("src") != src_before

        # The harness must be able to fail: a slider nobody listens to changes nothing ...
        inert = bh.slider_by_description(page, "inert")
        fingerprint = bh.outputs_fingerprint(page)
        bh.move_slider(inert)
        assert bh.slider_value(inert) == "6"
        assert bh.wait_for_change(page, fingerprint, timeout=2) is None, "an inert slider was seen as changing output"

        # ... a callback that raises inside an Output shows a traceback in the notebook ...
        bh.move_slider(bh.slider_by_description(page, "broken"), presses=1)
        errors = _wait_for_errors(lambda: bh.errors_in_notebook(page))
        assert len(errors) == 1 and "broken slider moved to 1" in errors[0], errors

        # ... and one that raises outside any Output lands in JupyterLab's log console.
        bh.move_slider(bh.slider_by_description(page, "loud"), presses=1)
        errors = _wait_for_errors(lambda: bh.errors_in_log_console(page))
        assert len(errors) == 1 and "loud slider moved to 1" in errors[0], errors
        bh.screenshot(page, "selftest-page")
    print(f"\nselftest: open {t_open:.1f} s, run all {t_run:.1f} s, total {time.monotonic() - t0:.1f} s")


@pytest.mark.parametrize("notebook", WIDGET_CHAPTERS)
def test_chapter_widgets(lab, page, notebook):
    """Run a chapter in JupyterLab: no tracebacks, and every control it shows changes a plot or an output."""
    stem = Path(notebook).stem
    bh.clear_artifacts(stem)
    t0 = time.monotonic()
    with bh.inspectable(page, stem, lab):
        bh.open_notebook(page, lab, notebook)
        t_open = time.monotonic() - t0
        t_run = bh.run_all_cells(page)
        errors = bh.errors_in_notebook(page)
        assert not errors, f"{notebook} shows {len(errors)} traceback(s) after Run All:\n" + "\n---\n".join(errors)
        found = bh.controls(page)
        assert any(kind == "slider" for kind, _ in found), f"{notebook} uses widgets but shows no slider after Run All"
        operated, fixed, shots = [], [], {}
        for i, (kind, control) in enumerate(found):
            label = bh.control_description(control)
            result = _operate_and_check(page, kind, control, f"{stem}-{i}-{_slug(label)}", shots)
            (fixed if result is None else operated).append((kind, label) if result is None else (label, *result))
        errors = bh.errors_in_notebook(page)
        assert not errors, f"{notebook}: operating its widgets raised:\n" + "\n---\n".join(errors)
        errors = bh.errors_in_log_console(page)
        assert not errors, f"{notebook}: a widget callback raised (log console):\n" + "\n---\n".join(errors)
        bh.screenshot(page, f"{stem}-page")
    print(f"\n{notebook}: open {t_open:.1f} s, run all {t_run:.1f} s, total {time.monotonic() - t0:.1f} s")
    print(f"  operated: {operated}" + (f"\n  cannot change (left alone): {fixed}" if fixed else ""))
