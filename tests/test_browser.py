"""The notebooks' explorers in a real browser: JupyterLab on 127.0.0.1, driven through Debian's Chromium.

Each test copies the committed notebooks to a temporary folder (so JupyterLab's autosave never touches them),
starts JupyterLab there with a token, opens one notebook, runs every cell in quick offline mode, checks that a
progress widget appeared while the long cells ran, then changes a control of the explorer and checks that the
rendered image changes within the time the issue allows. Screenshots go to `build/browser/` (test artifacts).

Needs the `chromium` executable (Debian package) and the `playwright` Python package. Outside CI a missing
browser skips the tests; in CI (`CI=true`) it fails them, so a broken install cannot pass silently.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "browser"
RUN_ALL_TIMEOUT = 600  # s: the whole notebook in quick mode (about 30 s on two idle cores)
RESPONSE_LIMIT = 2.0  # s: a control change must re-render within this (issue 14)


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _requirements_or_skip() -> str:
    missing = []
    browser = _chromium()
    if browser is None:
        missing.append("the chromium executable (sudo apt-get install chromium)")
    for module in ("playwright", "jupyterlab"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the {module} package (pip install -r requirements.txt)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's process: get SIGTERM when the test process dies, even by SIGKILL or a timeout, so no
    JupyterLab (and its kernels) outlives a killed test run (Linux; elsewhere the `finally` below must do)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextmanager
def jupyterlab(tmp_path: Path):
    """JupyterLab serving a copy of notebooks/ on 127.0.0.1; yields (base_url, token); stopped on exit."""
    served = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", served, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "CNNVIS_QUICK": "1", "CNNVIS_OFFLINE": "1", "CNNVIS_PROGRESS": "1",
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    env.pop("TQDM_DISABLE", None)
    log = open(tmp_path / "jupyterlab.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={served}",
         "--LabApp.news_url=", "--ServerApp.open_browser=False"],
        env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not start; log:\n{(tmp_path / 'jupyterlab.log').read_text()}")
            time.sleep(0.5)
        yield base, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@contextmanager
def browser_page(executable: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def run_all_cells(page, name: str) -> dict:
    """Run every cell of the open notebook; return when the explorer's widget is there.

    Returns what was seen on the way: whether a progress widget appeared while cells still ran.
    """
    from playwright.sync_api import Error as PlaywrightError

    page.locator(".jp-Notebook").first.wait_for()
    kernel_idle(page, timeout=180)
    for dismiss in page.locator(".jp-Notification-Toast button", has_text="No").all():
        dismiss.click()  # "get notified about Jupyter news?"
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    seen_progress_while_busy = False
    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    while time.monotonic() < deadline:
        busy = kernel_status(page) != "Idle"
        bars = page.locator(".jp-OutputArea .widget-hprogress")
        if busy and bars.count() > 0:
            if not seen_progress_while_busy and bars.last.is_visible():
                with suppress(PlaywrightError):  # an artifact only: a leave=False bar hides when its loop ends
                    bars.last.screenshot(path=str(ARTIFACTS / f"{name}-progress.png"), timeout=2_000)
            seen_progress_while_busy = True
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                              has_text="Traceback")
        if errors.count() > 0:
            page.screenshot(path=str(ARTIFACTS / f"{name}-error.png"))
            pytest.fail(f"{name}: a cell raised: {errors.first.inner_text()[:2000]}")
        if page.locator(".widget-interact").count() > 0:
            kernel_idle(page, timeout=RUN_ALL_TIMEOUT)
            break
        time.sleep(0.25)
    else:
        page.screenshot(path=str(ARTIFACTS / f"{name}-timeout.png"))
        pytest.fail(f"{name}: the explorer did not appear within {RUN_ALL_TIMEOUT} s")
    explorer = page.locator(".widget-interact").last
    explorer.scroll_into_view_if_needed()
    return {"progress": seen_progress_while_busy, "explorer": explorer}


def kernel_status(page) -> str:
    """The kernel state the status bar shows ("Idle", "Busy", "Starting", ...)."""
    for text in page.locator(".jp-StatusBar-TextItem").all_inner_texts():
        if " | " in text:
            return text.rsplit(" | ", 1)[1].strip()
    return "unknown"


def kernel_idle(page, timeout: float) -> None:
    """Wait until the status bar has shown the kernel idle for half a second (queued cells run in between)."""
    deadline, idle_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if kernel_status(page) == "Idle":
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= 0.5:
                return
        else:
            idle_since = None
        time.sleep(0.1)
    pytest.fail(f"the kernel was not idle within {timeout:.0f} s (status: {kernel_status(page)})")


def slowdown(cpu_seconds: float = 0.3) -> float:
    """How many times longer CPU work takes here now than on an idle core: wall time over CPU time of a busy loop
    (1.0 when this process has a core to itself, about k when k runnable processes share each core).

    The explorers must respond within RESPONSE_LIMIT on idle cores; on a busy machine the limit is scaled by this
    ratio, measured in this process around the response, so the test judges the explorer, not the machine's load.
    """
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while time.process_time() - cpu0 < cpu_seconds and time.perf_counter() - wall0 < 30:
        sum(i * i for i in range(10_000))
    return max(1.0, (time.perf_counter() - wall0) / max(time.process_time() - cpu0, 1e-9))


def image_source(explorer) -> str | None:
    images = explorer.locator("img")
    return images.first.get_attribute("src") if images.count() else None


def wait_for_new_image(explorer, before: str | None, limit: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < max(limit * 10, 30):
        now = image_source(explorer)
        if now is not None and now != before:
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail("the explorer's image did not change after the control was changed")


def step_slider(explorer, description: str) -> None:
    """Move the slider labelled `description` one step right with the keyboard, as a user would."""
    slider = explorer.locator(".widget-slider", has=explorer.page.locator("label", has_text=description)).first
    slider.locator(".noUi-handle").first.focus()
    explorer.page.keyboard.press("ArrowRight")


@contextmanager
def notebook_run_in_lab(tmp_path: Path, executable: str, name: str):
    """JupyterLab and a browser page with notebook ``name`` opened and Run All done: yields ``(page, seen)``
    (what :func:`run_all_cells` saw)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with jupyterlab(tmp_path) as (base, token), browser_page(executable) as page:
        page.goto(f"{base}/lab/tree/{name}.ipynb?token={token}")
        yield page, run_all_cells(page, name)


@pytest.fixture
def chromium_executable():
    return _requirements_or_skip()


def test_sheet4_channel_browser_responds(tmp_path, chromium_executable):
    with notebook_run_in_lab(tmp_path, chromium_executable, "sheet4") as (page, seen):
        explorer = seen["explorer"]
        wait_for_new_image(explorer, None, RUN_ALL_TIMEOUT)  # interact draws once on creation
        page.screenshot(path=str(ARTIFACTS / "sheet4-explorer-before.png"))
        before = image_source(explorer)
        load = slowdown()
        step_slider(explorer, "channel")
        took = wait_for_new_image(explorer, before, RESPONSE_LIMIT)
        load = max(load, slowdown())
        page.screenshot(path=str(ARTIFACTS / "sheet4-explorer-after.png"))
    assert seen["progress"], "no progress widget appeared while the sheet 4 cells ran (training shows one)"
    assert took <= RESPONSE_LIMIT * load, (f"the channel browser took {took:.1f} s to re-render (limit "
                                          f"{RESPONSE_LIMIT} s on idle cores, times {load:.1f} for the load now)")


def test_sheet5_explorer_responds(tmp_path, chromium_executable):
    with notebook_run_in_lab(tmp_path, chromium_executable, "sheet5") as (page, seen):
        explorer = seen["explorer"]
        button = explorer.locator("button", has_text="Run")
        before = image_source(explorer)
        button.click()
        wait_for_new_image(explorer, before, RESPONSE_LIMIT)
        page.screenshot(path=str(ARTIFACTS / "sheet5-explorer-before.png"))
        before = image_source(explorer)
        load = slowdown()
        step_slider(explorer, "filter")
        button.click()
        took = wait_for_new_image(explorer, before, RESPONSE_LIMIT)
        load = max(load, slowdown())
        page.screenshot(path=str(ARTIFACTS / "sheet5-explorer-after.png"))
    assert seen["progress"], "no progress widget appeared while the sheet 5 cells ran (the ascents show one)"
    assert took <= RESPONSE_LIMIT * load, (f"the explorer took {took:.1f} s to re-render (limit {RESPONSE_LIMIT} s on "
                                          f"idle cores, times {load:.1f} for the machine's load now)")
