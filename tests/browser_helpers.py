"""Drive a real JupyterLab in headless Chromium, for the widget tests nbval cannot do (tests/test_browser.py).

`LabServer` starts `jupyter lab` on 127.0.0.1 with a random token in a throw-away root, config, data and
runtime folder, and stops it together with every kernel it started. The page helpers below open a
notebook, run all its cells through the Run menu, move an ipywidgets slider with the keyboard and read
what the outputs look like, so a test can say "moving this slider changed the picture".

Chromium is Debian's (/usr/bin/chromium): Playwright's own browser download is not available here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # git-ignored
VIEWPORT = {"width": 1280, "height": 900}

# JupyterLab front-end plugins that only cost time (or pop up toasts over the notebook) in a test.
DISABLED_LAB_PLUGINS = [
    "@jupyterlab/apputils-extension:announcements",
    "@jupyterlab/lsp-extension:plugin",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> None:
    """Skip with `reason` on a developer's machine; fail in CI (CI=true), which must run the browser tests."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so the browser tests must run: see README, 'Browser test')")
    pytest.skip(reason)


def browser_unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None if they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found: `apt-get install -y chromium`"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: `pip install -e '.[dev]'`"
    if shutil.which("jupyter") is None and not (Path(sys.executable).parent / "jupyter").exists():
        return "jupyter is not installed"
    return None


# ----------------------------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _live_processes() -> Iterator[tuple[int, int, str]]:
    """(pid, process group, command line) of every live process but this one (Linux /proc; zombies left out)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if state != "Z":  # a zombie has exited; only its parent's wait() is missing
            yield int(entry.name), int(pgrp), cmd


class LabServer:
    """`jupyter lab` on 127.0.0.1:<free port> with a random token, everything it writes under `workdir`.

    The notebooks are served from `root_dir` (give it a copy: the browser may autosave). Config, data,
    runtime and IPython folders are fresh folders under `workdir`, so no user setting, saved workspace or
    news prompt gets in the way; the python3 kernel spec still comes from ipykernel in sys.prefix.
    """

    def __init__(self, root_dir: Path, workdir: Path, startup_timeout: float = 60.0) -> None:
        self.root_dir = Path(root_dir)
        self.workdir = Path(workdir)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "jupyter-lab.log"
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._log = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _write_config(self) -> dict[str, str]:
        config = self.workdir / "jupyter-config"
        dirs = {
            "JUPYTER_CONFIG_DIR": config,
            "JUPYTER_DATA_DIR": self.workdir / "jupyter-data",
            "JUPYTER_RUNTIME_DIR": self.workdir / "jupyter-runtime",
            "IPYTHONDIR": self.workdir / "ipython",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        (config / "labconfig").mkdir(exist_ok=True)
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {name: True for name in DISABLED_LAB_PLUGINS}})
        )
        # Attach every cell to the DOM (no virtual scrolling), so a widget far down a chapter is really there.
        tracker = config / "lab" / "user-settings" / "@jupyterlab" / "notebook-extension"
        tracker.mkdir(parents=True, exist_ok=True)
        (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
        # Never ask whether to fetch news or check for updates.
        apputils = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
        apputils.mkdir(parents=True, exist_ok=True)
        (apputils / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
        )
        return {k: str(v) for k, v in dirs.items()}

    def start(self) -> LabServer:
        env = dict(os.environ)
        env.update(self._write_config())
        env["PYTHONUNBUFFERED"] = "1"
        # As on a student's machine: no token or extra paths from the caller, and the kernel picks its own
        # matplotlib backend (inline) even if CI exported MPLBACKEND=Agg.
        for name in ("JUPYTER_PATH", "JUPYTER_TOKEN", "MPLBACKEND"):
            env.pop(name, None)
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.open_browser=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.jpserver_extensions={'jupyter_lsp': False}",
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # A session of its own: stop() can signal the server's whole process group and nothing else.
        self.proc = subprocess.Popen(
            cmd, cwd=self.root_dir, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                status = self.api("GET", "/api/status", timeout=2)
                if isinstance(status, dict) and "started" in status:
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(0.25)
        raise RuntimeError(
            f"jupyter lab did not answer /api/status in {self.startup_timeout:.0f} s; log:\n{self.log_tail()}"
        )

    def shutdown_kernels(self) -> None:
        """DELETE every kernel through the API, all at once (each takes a second or two to exit)."""
        try:
            kernels = self.api("GET", "/api/kernels", timeout=5)
        except (OSError, urllib.error.URLError, ValueError):
            return

        def delete(kernel_id: str) -> None:
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                self.api("DELETE", f"/api/kernels/{kernel_id}", timeout=15)

        threads = [threading.Thread(target=delete, args=(k["id"],)) for k in kernels]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def kernel_state(self, path: str) -> str | None:
        """The execution state of the kernel of the notebook at `path` (relative to the root), per the server."""
        for session in self.api("GET", "/api/sessions", timeout=5):
            if session.get("path") == path and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def leftover_processes(self) -> list[tuple[int, str]]:
        """Processes of ours still alive: the server's process group, and any process naming our folder (the
        kernels: they run in sessions of their own, with a connection file in our runtime folder)."""
        group = self.proc.pid if self.proc is not None else None
        return [(pid, cmd) for pid, pgrp, cmd in _live_processes() if pgrp == group or str(self.workdir) in cmd]

    def stop(self) -> None:
        """Shut the kernels down through the API, then the server's process group; kill whatever is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.shutdown_kernels()
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                self.api("POST", "/api/shutdown", timeout=5)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=10)
        # The server has exited; anything left in its group (a stray child) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        # Kernels run in sessions of their own; any that outlived the server are found by our runtime folder.
        deadline = time.monotonic() + 5
        while (left := self.leftover_processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid, _ in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- helpers --------------------------------------------------------------------------------------------
    def api(self, method: str, path: str, timeout: float = 10) -> object:
        req = urllib.request.Request(
            self.base_url + path, method=method, headers={"Authorization": f"token {self.token}"},
            data=b"" if method in ("POST", "PUT", "PATCH") else None,
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def notebook_url(self, name: str) -> str:
        # `reset` drops any saved workspace, so only this notebook opens.
        return f"{self.base_url}/lab/tree/{name}?reset&token={self.token}"

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


# ----------------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------------

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
INDICATOR = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator"
SLIDER = ".widget-slider"

# Returns {cells, empty, numbered, running} for the code cells of the visible notebook.
_PROMPTS_JS = """
(sel) => {
  const nb = document.querySelector(sel);
  const out = {cells: 0, empty: 0, numbered: 0, running: 0};
  if (!nb) return out;
  for (const cell of nb.querySelectorAll('.jp-CodeCell')) {
    out.cells += 1;
    const src = (cell.querySelector('.jp-InputArea-editor .cm-content') || {}).textContent || '';
    if (!src.trim()) { out.empty += 1; continue; }
    const prompt = ((cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '').trim();
    if (/^\\[\\*\\]/.test(prompt)) out.running += 1;
    else if (/^\\[\\d+\\]/.test(prompt)) out.numbered += 1;
  }
  return out;
}
"""

# A fingerprint of everything the notebook's outputs show, minus the sliders themselves (their handle and
# readout move by design): every image's src and every output's text, each hashed (FNV-1a) to keep it small.
_OUTPUTS_JS = """
(sel) => {
  const nb = document.querySelector(sel);
  if (!nb) return null;
  const fnv = (s) => { let h = 0x811c9dc5; for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; } return h.toString(16); };
  const parts = [];
  for (const area of nb.querySelectorAll('.jp-Cell-outputArea')) {
    const clone = area.cloneNode(true);
    clone.querySelectorAll('.widget-slider, .widget-readout').forEach((e) => e.remove());
    for (const img of clone.querySelectorAll('img')) parts.push('img:' + fnv(img.getAttribute('src') || ''));
    for (const svg of clone.querySelectorAll('svg')) parts.push('svg:' + fnv(svg.outerHTML));
    for (const c of area.querySelectorAll('canvas')) { try { parts.push('canvas:' + fnv(c.toDataURL())); }
      catch (e) {} }
    parts.push('text:' + fnv(clone.innerText || ''));
  }
  return parts.join('|');
}
"""

# Error outputs (tracebacks), also those inside an ipywidgets Output, and widgets that failed to display.
# JupyterLab renders an `error` output with the stderr mime type, so stderr text that looks like a traceback
# counts. Long ones keep their end, which names the error.
_ERRORS_JS = """
(sel) => {
  const nb = document.querySelector(sel);
  if (!nb) return [];
  const errs = [];
  for (const o of nb.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')) {
    const t = o.innerText || '';
    if (/Traceback|^\\s*\\w*(Error|Exception)\\b/m.test(t)) errs.push(t.length > 2500 ? '...' + t.slice(-2500) : t);
  }
  // A widget the front end could not show (no model, a missing or broken widget extension).
  for (const o of nb.querySelectorAll('.jp-OutputArea-output')) {
    const t = (o.innerText || '').trim();
    if (/^Error displaying widget/.test(t)) errs.push(t.slice(0, 500));
  }
  return errs;
}
"""


_SHOW_FIRST_ERROR_JS = """
() => {
  for (const o of document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')) {
    if (/Traceback|Error/.test(o.innerText || '')) { o.scrollIntoView({block: 'center'}); return true; }
  }
  return false;
}
"""


def open_notebook(page, server: LabServer, name: str, timeout: float = 60.0) -> None:
    """Open `name` (relative to the server's root) and wait until its kernel is idle, per page and server."""
    page.goto(server.notebook_url(name), wait_until="domcontentloaded", timeout=timeout * 1000)
    page.wait_for_selector(f"{NOTEBOOK} .jp-Cell", timeout=timeout * 1000)
    # A notebook without kernel metadata asks which kernel to start: take the default.
    with contextlib.suppress(Exception):
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=500)
    deadline = time.monotonic() + timeout
    while server.kernel_state(name) != "idle":
        if time.monotonic() > deadline:
            raise TimeoutError(f"the kernel of {name} is not idle after {timeout:.0f} s: {server.kernel_state(name)}")
        time.sleep(0.1)
    wait_kernel_idle(page, timeout)


def wait_kernel_idle(page, timeout: float = 60.0) -> None:
    page.wait_for_selector(f'{INDICATOR}[data-status="idle"]', state="attached", timeout=timeout * 1000)


def code_cell_prompts(page) -> dict:
    return page.evaluate(_PROMPTS_JS, NOTEBOOK)


def run_all_cells(page, timeout: float = 90.0) -> float:
    """Run > Run All Cells, then wait until every non-empty code cell has a number and the kernel is idle.

    Returns the seconds it took.
    """
    t0 = time.monotonic()
    page.locator(NOTEBOOK).click(position={"x": 5, "y": 5})  # make the notebook the current widget
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    deadline = t0 + timeout
    while True:
        p = code_cell_prompts(page)
        if p["running"] == 0 and p["numbered"] == p["cells"] - p["empty"]:
            with contextlib.suppress(Exception):
                wait_kernel_idle(page, timeout=max(1.0, deadline - time.monotonic()))
                if code_cell_prompts(page)["running"] == 0:
                    break
        if p["running"] == 0 and p["numbered"] and errors_in_notebook(page):
            break  # an error stops Run All: the cells after it keep no number; the caller reports the error
        if time.monotonic() > deadline:
            raise TimeoutError(f"Run All Cells did not finish in {timeout:.0f} s (code cells: {p})")
        time.sleep(0.25)
    return time.monotonic() - t0


def errors_in_notebook(page) -> list[str]:
    """Tracebacks shown in the open notebook's outputs, including inside ipywidgets Outputs."""
    return page.evaluate(_ERRORS_JS, NOTEBOOK)


def errors_in_log_console(page) -> list[str]:
    """Tracebacks JupyterLab put in the log console: a widget callback that raised outside any Output.

    Opens the log console (it splits the main area), so call it last.
    """
    status = page.locator(".jp-LogConsoleStatusItem:not(.lm-mod-hidden)")
    if not status.count() or not re.search(r"[1-9]", status.first.inner_text()):
        return []
    status.first.click()
    page.locator(".jp-LogConsolePanel").first.wait_for(state="visible", timeout=10_000)
    page.wait_for_timeout(300)
    return page.evaluate(_ERRORS_JS, ".jp-LogConsolePanel")


def outputs_fingerprint(page) -> str:
    return page.evaluate(_OUTPUTS_JS, NOTEBOOK)


def sliders(page):
    """A locator for every ipywidgets slider in the open notebook, in document order."""
    return page.locator(f"{NOTEBOOK} {SLIDER}")


def slider_description(slider) -> str:
    return (slider.locator(".widget-label").first.inner_text() or "").strip()


def slider_value(slider) -> str:
    """The readout (what a student sees), else the handle's aria-valuenow."""
    readout = slider.locator(".widget-readout")
    if readout.count() and readout.first.is_visible():
        return readout.first.inner_text().strip()
    return slider.locator(".noUi-handle").first.get_attribute("aria-valuenow") or ""


def slider_by_description(page, description: str):
    """The first slider whose label is `description` (exact, then case-insensitive substring)."""
    all_ = sliders(page)
    labels = [slider_description(all_.nth(i)) for i in range(all_.count())]
    for i, label in enumerate(labels):
        if label == description:
            return all_.nth(i)
    for i, label in enumerate(labels):
        if description.lower() in label.lower():
            return all_.nth(i)
    raise LookupError(f"no slider labelled {description!r}; the notebook's sliders are labelled {labels}")


def move_slider(slider, presses: int = 3) -> str:
    """Focus the slider's handle and press arrow keys as a student would; returns the key pressed.

    ArrowRight, unless the handle is already at its maximum (then ArrowLeft).
    """
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    now, hi = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
    key = "ArrowLeft" if now is not None and hi is not None and float(now) >= float(hi) else "ArrowRight"
    handle.focus()
    for _ in range(presses):
        handle.press(key)
    return key


# Every control a student can operate, by the class ipywidgets 8 gives its view. (Play is left out: it
# animates on its own clock; Button has no value to read back.)
CONTROL_KINDS = {
    "widget-slider": "slider",  # IntSlider, FloatSlider, FloatLogSlider, SelectionSlider, the range sliders
    "widget-checkbox": "checkbox",
    "widget-dropdown": "dropdown",
    "widget-toggle-buttons": "toggle buttons",
}
_CONTROLS = ", ".join(f"{NOTEBOOK} .{cls}" for cls in CONTROL_KINDS)


def controls(page) -> list[tuple[str, object]]:
    """(kind, locator) of every operable ipywidgets control in the open notebook, in document order."""
    found = page.locator(_CONTROLS)
    classes = found.evaluate_all("(els) => els.map((e) => Array.from(e.classList))")
    return [(next(CONTROL_KINDS[c] for c in cls if c in CONTROL_KINDS), found.nth(i)) for i, cls in enumerate(classes)]


def control_description(control) -> str:
    """The control's `description` as shown (a checkbox shows it beside the box, its first label is empty)."""
    for text in control.locator(".widget-label, .widget-label-basic").all_inner_texts():
        if text.replace("\u200b", "").strip():
            return text.replace("\u200b", "").strip()
    return control.inner_text().strip()


def control_value(kind: str, control) -> str:
    if kind == "slider":
        return slider_value(control)
    if kind == "checkbox":
        return str(control.locator("input[type=checkbox]").first.is_checked())
    if kind == "dropdown":
        return control.locator("select").first.evaluate("(s) => s.options[s.selectedIndex]?.text ?? ''")
    active = control.locator("button.mod-active")  # toggle buttons
    return active.first.inner_text().strip() if active.count() else ""


def operate(kind: str, control) -> str | None:
    """Change the control as a student would; returns what was done, or None if it cannot change (disabled,
    a slider whose min is its max, a single option)."""
    if kind == "slider":
        handle = control.locator(".noUi-handle").first
        lo, hi = handle.get_attribute("aria-valuemin"), handle.get_attribute("aria-valuemax")
        if control.locator("[disabled]").count() or (lo is not None and lo == hi):
            return None
        return f"3 x {move_slider(control)}"
    if kind == "checkbox":
        box = control.locator("input[type=checkbox]").first
        if box.is_disabled():
            return None
        box.click()
        return "click"
    if kind == "dropdown":
        select = control.locator("select").first
        n = select.evaluate("(s) => s.options.length")
        if select.is_disabled() or n < 2:
            return None
        index = (select.evaluate("(s) => s.selectedIndex") + 1) % n
        select.select_option(index=index)
        return f"select option {index}"
    other = control.locator("button:not(.mod-active):not([disabled])")  # toggle buttons
    if not other.count():
        return None
    text = other.first.inner_text().strip()
    other.first.click()
    return f"click {text!r}"


def wait_for_change(page, before: str, timeout: float = 20.0) -> str | None:
    """Wait until the outputs' fingerprint differs from `before` and the kernel is idle again.

    Returns the settled new fingerprint, or None if nothing changed within `timeout`.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if outputs_fingerprint(page) != before:
            # Let the redraw finish (clear_output(wait=True) then the new figure), then read it again.
            with contextlib.suppress(Exception):
                wait_kernel_idle(page, timeout=max(1.0, deadline - time.monotonic()))
            page.wait_for_timeout(200)
            after = outputs_fingerprint(page)
            if after != before:
                return after
        page.wait_for_timeout(150)
    return None


def output_area_of(locator):
    """The output area of the notebook cell that contains `locator` (what a screenshot should show)."""
    return locator.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' jp-Cell-outputArea ')][1]")


def element_id(locator) -> str:
    """A stable id for the element (set once as a data attribute), to tell whether two locators meet."""
    return locator.evaluate("(e) => e.dataset.browserTestId ||= Math.random().toString(36).slice(2)")


def clear_artifacts(prefix: str) -> None:
    """Remove tests/artifacts/<prefix>-* left by an earlier run, so every file there is from this one."""
    if ARTIFACTS.is_dir():
        for old in ARTIFACTS.glob(f"{prefix}-*"):
            old.unlink()


def screenshot(page, name: str, element=None) -> Path:
    """Save a PNG to tests/artifacts/<name>.png (the element's, or the whole page's); returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    try:
        if element is not None:
            element.scroll_into_view_if_needed(timeout=5000)
            element.screenshot(path=str(path), timeout=10000)
        else:
            page.screenshot(path=str(path), full_page=False, timeout=10000)
    except Exception as exc:  # a screenshot must never hide the real failure
        return Path(f"{path} (not saved: {type(exc).__name__}: {exc})")
    return path


@contextlib.contextmanager
def inspectable(page, name: str, server: LabServer | None = None) -> Iterator[None]:
    """On any failure inside the block, save a page screenshot and its HTML and name both in the error."""
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        with contextlib.suppress(Exception):  # show the first traceback, if there is one
            page.evaluate(_SHOW_FIRST_ERROR_JS)
        shot = screenshot(page, f"{name}-failure")
        html = ARTIFACTS / f"{name}-failure.html"
        with contextlib.suppress(Exception):
            html.write_text(page.content())
        extra = f"\n--- jupyter lab log (tail) ---\n{server.log_tail(20)}" if server is not None else ""
        what = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
        raise AssertionError(f"{what}\n(screenshot: {shot}; page HTML: {html}){extra}") from exc


# ----------------------------------------------------------------------------------------------------------------
# A small notebook to test the harness itself
# ----------------------------------------------------------------------------------------------------------------

_FIXTURE_CELLS = [
    "import ipywidgets as widgets\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
    "from IPython.display import display",
    # An explorer with one control of each kind, all redrawing a softmax plot in an Output: operating any
    # of them must change the picture.
    "x = np.array([2.0, 1.0, 0.5, -1.0])\n"
    "temperature = widgets.FloatSlider(value=1.0, min=0.1, max=5.0, step=0.3, description='temperature')\n"
    "negate = widgets.Checkbox(value=False, description='negate scores')\n"
    "colour = widgets.Dropdown(options=['tab:blue', 'tab:orange'], description='colour')\n"
    "style = widgets.ToggleButtons(options=['bars', 'line'], description='draw as')\n"
    "plot = widgets.Output()\n\n"
    "def draw(change=None):\n"
    "    p = np.exp((-x if negate.value else x) / temperature.value); p /= p.sum()\n"
    "    with plot:\n"
    "        plot.clear_output(wait=True)\n"
    "        fig, ax = plt.subplots(figsize=(4, 2.2))\n"
    "        (ax.bar if style.value == 'bars' else ax.plot)(range(len(p)), p, color=colour.value)\n"
    "        ax.set_ylim(0, 1); ax.set_title(f'softmax(x / {temperature.value:.1f})')\n"
    "        plt.show()\n\n"
    "for control in (temperature, negate, colour, style):\n"
    "    control.observe(draw, 'value')\n"
    "draw()\n"
    "display(widgets.VBox([temperature, negate, colour, style, plot]))",
    # A slider nothing listens to: moving it must NOT count as a change (the harness can fail).
    "inert = widgets.IntSlider(value=3, min=0, max=10, description='inert')\ndisplay(inert)",
    # A slider whose callback raises inside an Output: the traceback must be found.
    "broken = widgets.IntSlider(value=0, min=0, max=10, description='broken')\nbroken_out = widgets.Output()\n\n"
    "def explode(change):\n"
    "    with broken_out:\n"
    "        raise ValueError(f'broken slider moved to {change.new}')\n\n"
    "broken.observe(explode, 'value')\n"
    "display(widgets.VBox([broken, broken_out]))",
    # A callback that raises outside any Output: JupyterLab sends the traceback to its log console.
    "loud = widgets.IntSlider(value=0, min=0, max=10, description='loud')\n\n"
    "def shout(change):\n"
    "    raise KeyError(f'loud slider moved to {change.new}')\n\n"
    "loud.observe(shout, 'value')\n"
    "display(loud)",
]


def strip_outputs(path: Path) -> None:
    """Clear a notebook's outputs, execution counts and saved widget state in place (use it on a copy).

    What the browser then shows comes only from running it, and a stale `[3]:` prompt cannot pass for a
    finished Run All.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, str(path))


def write_fixture_notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in _FIXTURE_CELLS]
    nbformat.write(nb, str(path))
    return path
