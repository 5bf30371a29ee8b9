"""The wizard in a real JupyterLab, driven by headless Chromium (Playwright's Python package).

JupyterLab runs on a free 127.0.0.1 port without a token, with a temporary root holding a copy of
the notebooks (autorun off, smoke on: the test clicks the steps itself). The test runs all cells,
loads the data, trains, tunes and adopts the best parameters (the Train tab then shows exactly the
tuned run), explains, packages and serves, retrains and serves again (the served model follows),
and opens an HTML report with the network blocked. An image run does the same on ``digits_images``
(the cnn, the per-pixel overlay, a served prediction for a PNG). Screenshots go to tests/artifacts/ (and the
Train view to docs/wizard.png for the README).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 over a temporary root with the notebooks; yields its URL."""
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    source = (ROOT / "notebooks" / "00_quickstart.ipynb").read_text()
    # The copy waits for clicks (autorun off) and uses smoke-sized steps.
    source = source.replace("autorun: bool = True", "autorun: bool = False").replace(
        "smoke: bool = False", "smoke: bool = True")
    assert "autorun: bool = False" in source and "smoke: bool = True" in source
    (root / "notebooks" / "00_quickstart.ipynb").write_text(source)
    (root / "notebooks" / "images.ipynb").write_text(_images_notebook(source))
    port = free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / ".runtime"), "JUPYTER_CONFIG_DIR": str(root / ".config"),
           "BENTOML_HOME": str(root / ".bentoml")}
    lab_bin = Path(sys.executable).parent / "jupyter-lab"
    log = (root / "lab.log").open("wb")
    proc = subprocess.Popen(
        [str(lab_bin), "--no-browser", "--allow-root", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.token=", "--ServerApp.password=", f"--ServerApp.root_dir={root}",
         "--ServerApp.port_retries=0", f"--LabApp.workspaces_dir={root / '.workspaces'}",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (root / "lab.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "JupyterLab did not start in 90 s"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def _images_notebook(quickstart: str) -> str:
    """The quickstart copy on ``digits_images``, training on one torch thread (a small CNN on a busy 2-core CPU)."""
    import json

    notebook = json.loads(quickstart)
    cells = notebook["cells"]
    parameters = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    text = "".join(parameters["source"])
    assert 'data: str = "breast_cancer"' in text
    parameters["source"] = text.replace('data: str = "breast_cancer"', 'data: str = "digits_images"')
    wizard = next(c for c in cells if "Wizard(" in "".join(c["source"]))
    wizard["source"] = "import torch\n\ntorch.set_num_threads(1)\n" + "".join(wizard["source"])
    return json.dumps(notebook)


@contextlib.contextmanager
def _browser_page(chromium_bin: str, height: int, last: str) -> Iterator[Any]:
    """A page of headless Chromium, 1400 pixels wide; the screenshot ``last`` is taken however the test ends."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_bin, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": height})
        try:
            yield page
        finally:
            page.screenshot(path=str(ARTIFACTS / last))
            browser.close()


def _open_and_load(page, lab: str, notebook: str, summary: str) -> None:
    """Open a notebook, take its python3 kernel, run all cells, and press the Data panel's Load data."""
    from playwright.sync_api import expect

    page.goto(f"{lab}/lab/tree/notebooks/{notebook}", timeout=120_000)
    page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
    # JupyterLab may ask which kernel to start (fresh config dir): take the notebook's python3.
    select = page.locator(".jp-Dialog button", has_text="Select")
    try:
        select.wait_for(timeout=15_000)
        select.click()
    except Exception:
        pass
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_attached(
        timeout=120_000)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
    load = page.locator("button.widget-button", has_text="Load data")
    load.wait_for(timeout=120_000)
    load.scroll_into_view_if_needed()
    load.click()
    expect(page.get_by_text(summary).first).to_be_visible(timeout=60_000)


def test_wizard_in_jupyterlab_trains_and_explains(chromium_bin: str, lab: str):
    from playwright.sync_api import expect

    with _browser_page(chromium_bin, 1000, "wizard-last.png") as page:
        # Step 1: load the data with the panel's button.
        _open_and_load(page, lab, "00_quickstart.ipynb", "569 rows")

        # Step 2: train; the metrics table and the live plot appear, the header shows the model.
        page.locator(".lm-TabBar-tab", has_text="2. Train").first.click()
        page.locator("button.widget-button", has_text="Train").first.click()
        expect(page.get_by_text("best epoch").first).to_be_visible(timeout=240_000)
        expect(page.locator("text=done in >> visible=true").first).to_be_visible(timeout=60_000)  # plot first
        expect(page.get_by_text("model: accuracy").first).to_be_visible()
        train_plot = page.locator(".widget-image:visible")
        expect(train_plot.first).to_be_visible()
        assert train_plot.first.bounding_box()["height"] > 100
        no_news = page.locator(".jp-toast-button", has_text="No")
        if no_news.count():
            no_news.first.click()
        page.set_viewport_size({"width": 1400, "height": 1700})
        wizard = page.locator(".jp-OutputArea-output", has_text="kit wizard").first
        wizard.evaluate("e => e.scrollIntoView({block: 'start'})")
        wizard.screenshot(path=str(ARTIFACTS / "wizard-train.png"))
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / "wizard-train.png", docs / "wizard.png")
        page.set_viewport_size({"width": 1400, "height": 1000})

        # Step 3 (#18 item 3): tune, use the best parameters; Train shows that run and that config exactly.
        page.locator(".lm-TabBar-tab", has_text="3. Tune").first.click()
        page.locator(".widget-text:visible", has_text="trials").locator("input").first.fill("2")
        page.locator("button.widget-button:visible", has_text="Tune").first.click()
        expect(page.get_by_text("the best config retrained").first).to_be_visible(timeout=300_000)
        page.locator("button.widget-button:visible", has_text="Use best parameters").first.click()
        expect(page.get_by_text("Train now holds trial").first).to_be_visible(timeout=60_000)
        page.locator(".lm-TabBar-tab", has_text="2. Train").first.click()
        expect(page.locator("text=retrained from trial >> visible=true").first).to_be_visible(timeout=60_000)
        assert page.locator("text=controls differ >> visible=true").count() == 0
        command = page.locator("code:visible", has_text="kit train").first.inner_text()
        lr_input = page.locator(".widget-text:visible", has_text="learning rate").locator("input").first
        shown_lr = float(lr_input.input_value())
        # the control holds the tuned value itself (no slider snapping it), the same the CLI line trains
        assert f"--lr {shown_lr!r}" in command or f"--lr {lr_input.input_value()}" in command, command
        page.screenshot(path=str(ARTIFACTS / "wizard-tuned-train.png"))

        # Step 4: explain the model; the row line says what was predicted and what is explained.
        page.locator(".lm-TabBar-tab", has_text="4. Explain").first.click()
        page.locator("button.widget-button:visible", has_text="Explain").first.click()
        expect(page.get_by_text("additivity error").first).to_be_visible(timeout=120_000)
        expect(page.get_by_text("explained output").first).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "wizard-explain.png"))

        # Step 7 (#18 item 1): store, serve, check; retrain; the old server is named stale, a restart
        # serves the new model, and the check compares the served tag and the probabilities.
        page.locator(".lm-TabBar-tab", has_text="Package").first.click()
        page.locator("button.widget-button:visible", has_text="Start server").first.click()
        expect(page.locator("text=the current model >> visible=true").first).to_be_visible(timeout=240_000)
        _send_test_request(page)
        first_tag = page.locator("td:visible", has_text="served_tag").locator("xpath=../td[2]").inner_text()
        assert _row(page, "matches_notebook") == "True"
        page.locator(".lm-TabBar-tab", has_text="2. Train").first.click()
        page.locator(".widget-text:visible", has_text="seed").locator("input").first.fill("5")
        page.locator("button.widget-button:visible", has_text="Train").first.click()
        expect(page.locator("text=trained in the Train step >> visible=true").first).to_be_visible(
            timeout=240_000)
        page.locator(".lm-TabBar-tab", has_text="Package").first.click()
        expect(page.locator("text=a previous model >> visible=true").first).to_be_visible(timeout=30_000)
        page.locator("button.widget-button:visible", has_text="Start server").first.click()
        expect(page.locator("text=the current model >> visible=true").first).to_be_visible(timeout=240_000)
        _send_test_request(page)
        assert _row(page, "served_tag") != first_tag and _row(page, "matches_notebook") == "True"
        page.screenshot(path=str(ARTIFACTS / "wizard-package.png"))
        page.locator("button.widget-button:visible", has_text="Stop server").first.click()


def test_wizard_in_jupyterlab_on_images_trains_explains_and_serves(chromium_bin: str, lab: str):
    """#14: digits_images in the wizard: the cnn is picked, trained, explained per pixel, served and asked.

    Smoke settings (the notebook's smoke=True): 8 epochs (patience 4) of the default cnn (width 32, two
    blocks for 8x8 images) on one torch thread; 20 test images explained against 30 background images.
    """
    from playwright.sync_api import expect

    with _browser_page(chromium_bin, 1100, "wizard-images-last.png") as page:
        _open_and_load(page, lab, "images.ipynb", "1797 rows")

        # Train: the network picker holds cnn for images, and the run trains it.
        page.locator(".lm-TabBar-tab", has_text="2. Train").first.click()
        label = page.locator("label", has_text=re.compile(r"^network$"))
        network = page.locator(".widget-text:visible").filter(has=label).locator("input").first
        expect(network).to_have_value("cnn", timeout=30_000)
        page.locator("button.widget-button:visible", has_text="Train").first.click()
        expect(page.get_by_text("best epoch").first).to_be_visible(timeout=240_000)
        expect(page.locator("text=done in >> visible=true").first).to_be_visible(timeout=60_000)
        expect(page.locator("code:visible", has_text="--net cnn").first).to_be_visible()

        # Explain: per-pixel SHAP; the global map and the overlay are images with data in the panel's output.
        page.locator(".lm-TabBar-tab", has_text="4. Explain").first.click()
        page.locator("button.widget-button:visible", has_text="Explain").first.click()
        expect(page.locator("text=additivity error >> visible=true").first).to_be_visible(timeout=180_000)
        expect(page.locator("text=images 0 to 3 of 20 >> visible=true").first).to_be_visible(timeout=60_000)
        panel = page.locator(".widget-tab-contents .widget-vbox:visible", has_text="class explained").first
        pictures = panel.locator("img.widget-image:visible")
        expect(pictures).to_have_count(2, timeout=60_000)  # the mean |SHAP| map, then the overlay
        for i in range(2):
            assert pictures.nth(i).evaluate("i => i.src.length > 0 && i.complete && i.naturalWidth > 100"), i
        # another class picked: explained again in the background, the overlay follows
        before = pictures.nth(1).get_attribute("src")
        label = page.locator("label", has_text=re.compile(r"^class explained$"))
        page.locator(".widget-dropdown:visible").filter(has=label).locator("select").select_option(label="class 3")
        expect(page.locator("text=of class '3' >> visible=true").first).to_be_visible(timeout=120_000)
        expect(pictures.nth(1)).not_to_have_attribute("src", before or "", timeout=60_000)
        pictures.nth(1).scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "wizard-images-explain.png"))

        # Package: Start server stores and serves the cnn; the test request sends test images as base64 PNG.
        page.locator(".lm-TabBar-tab", has_text="Package").first.click()
        page.locator("button.widget-button:visible", has_text="Start server").first.click()
        expect(page.locator("text=the current model >> visible=true").first).to_be_visible(timeout=240_000)
        _send_test_request(page)
        assert _row(page, "matches_notebook") == "True"
        expect(page.locator("pre:visible", has_text='"prediction"').first).to_be_visible()
        sent = page.locator("img[alt='row 0']:visible").first
        assert sent.evaluate("i => i.complete && i.naturalWidth == 8")  # the 8x8 PNG the request carried
        expect(page.locator("figcaption:visible", has_text="row 0: ").first).to_be_visible()  # its prediction
        page.screenshot(path=str(ARTIFACTS / "wizard-images-package.png"))
        page.locator("button.widget-button:visible", has_text="Stop server").first.click()


def _send_test_request(page) -> None:
    """Press Send test request once Start server has ended, and wait for the check's table.

    A click that never reaches the kernel shows no "sending a request" status; it is pressed again
    once (a user would too), and the run says so.
    """
    from playwright.sync_api import expect

    expect(page.locator("text=starting the server >> visible=true")).to_have_count(0, timeout=240_000)
    button = page.locator("button.widget-button:visible", has_text="Send test request").first
    table = page.locator("td:visible", has_text="matches_notebook").first
    for attempt in range(2):
        button.click()
        try:
            expect(table.or_(page.locator("text=sending a request >> visible=true").first)).to_be_visible(
                timeout=30_000)
            break
        except AssertionError:
            print(f"Send test request: the click (attempt {attempt + 1}) showed nothing in 30 s; pressing it again")
    expect(table).to_be_visible(timeout=180_000)


def _row(page, name: str) -> str:
    """The value cell of the visible Package table row ``name``."""
    return page.locator("td:visible", has_text=name).first.locator("xpath=../td[2]").inner_text().strip()


def test_html_report_shows_every_panel_with_the_network_blocked(chromium_bin: str, tmp_path: Path):
    """#18 item 4: a `kit run` report renders the wizard's panels with no network at all."""
    from playwright.sync_api import sync_playwright

    from kit.runner import run_notebooks

    report = run_notebooks([ROOT / "notebooks" / "00_quickstart.ipynb"], {"steps": "data,train,gate"}, smoke=True,
                           out=tmp_path, echo=False)
    assert report.ok, report.runs[0].error
    page_file = report.runs[0].html
    assert page_file is not None
    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_bin, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})

        def block(route) -> None:  # everything but the report file itself
            requested.append(route.request.url)
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                route.abort()

        page.route("**/*", block)
        try:
            page.goto(page_file.as_uri(), timeout=60_000)
            wizard = page.locator(".kit-wizard-static").first
            wizard.wait_for(timeout=30_000)
            for title in ("Data", "Train", "Gate"):
                assert wizard.locator("h4", has_text=title).first.is_visible(), title
            assert wizard.get_by_text("569 rows").first.is_visible()
            assert wizard.get_by_text("the model's verdict").first.is_visible()
            plots = wizard.locator("img")
            assert plots.count() >= 2
            assert all(plots.nth(i).evaluate("i => i.complete && i.naturalWidth > 100") for i in range(plots.count()))
            page.screenshot(path=str(ARTIFACTS / "report-offline.png"), full_page=False)
        finally:
            browser.close()
    # nothing outside the file was even needed: no widget renderer, require.js or MathJax request
    assert not [u for u in requested if not u.startswith(("file://", "data:"))], requested
