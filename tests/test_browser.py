"""End to end in a real headless Chromium: `streamlit run dashboard/app.py`, upload, look.

Drives Debian's ``/usr/bin/chromium`` through Playwright (Playwright's own browser download
needs the internet). Screenshots go to ``screenshots/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
WAIT_MS = 180_000  # the first run imports torch and builds the model; two cores are shared

if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian package 'chromium'; tests/run.sh installs it as root)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The app on a free port; the log is shown if it fails to come up."""
    port = _free_port()
    log = SHOTS / "streamlit.log"
    SHOTS.mkdir(exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            # the app as shipped: the tests' "show error details" override stays out of the server
            env={k: v for k, v in os.environ.items() if k != "STREAMLIT_CLIENT_SHOW_ERROR_DETAILS"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_idle(page, appear_ms: int = 5_000) -> None:
    """Wait for the script run a change started (if any) to finish: the "running" widget comes and goes."""
    try:
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="attached", timeout=appear_ms)
    except sync_api.TimeoutError:
        pass  # the run was over before we looked
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=WAIT_MS)


@pytest.fixture(scope="module")
def page():
    with sync_api.sync_playwright() as p:
        executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


def test_upload_shows_gradcam_and_the_graph_reacts_to_a_click(server, page, make_png, tmp_path):
    # --- Attention: upload an image, the Grad-CAM overlay renders ---------------------------------
    page.goto(f"{server}/attention")
    page.get_by_text("How far to trust this map").wait_for(timeout=WAIT_MS)
    picture = tmp_path / "blob.png"
    picture.write_bytes(make_png(7, size=96, colour=True))
    page.locator('[data-testid="stSidebar"] input[type="file"]').set_input_files(str(picture))
    page.locator('[data-testid="stSidebar"] [data-testid="stImageCaption"]', has_text="blob.png").wait_for(
        timeout=WAIT_MS)
    wait_idle(page)
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stImage"]')]
                   .filter(e => e.innerText.includes('Grad-CAM · '))
                   .some(e => { const img = e.querySelector('img'); return img && img.complete && img.naturalWidth > 0; })""",
        timeout=WAIT_MS)
    assert page.get_by_text("Prediction").first.is_visible()
    page.get_by_text("Check this map").first.click()  # the checks run only when asked for (issue 21)
    page.get_by_text("Deletion AUC").first.wait_for(timeout=WAIT_MS)
    assert page.get_by_text("Deletion AUC").first.is_visible()  # the trust scores beside the map
    page.screenshot(path=str(SHOTS / "browser_attention.png"))

    # --- Architecture: the connectivity graph, and a click on a layer highlights its inputs ------------
    page.goto(server)
    page.get_by_text("Dense links").first.wait_for(timeout=WAIT_MS)
    graph = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first
    graph.wait_for(timeout=WAIT_MS)
    title = graph.locator(".gtitle").text_content()  # "denseblock1: L layers, N links = L·(L+1)/2"
    n_layers = int(title.split(":")[1].split("layers")[0])
    nodes = graph.locator(".scatterlayer .trace").last.locator(".point")
    assert nodes.count() == n_layers + 1  # block input + L layers
    box = nodes.nth(2).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    wait_idle(page)
    page.get_by_text("reads 2 inputs").first.wait_for(timeout=WAIT_MS)
    page.wait_for_function(  # the redrawn graph: layer 2's two incoming links in their own colour
        """() => [...document.querySelectorAll('.js-plotly-plot .legendtext')]
                   .some(t => t.textContent === 'inputs of layer 2')""", timeout=WAIT_MS)
    page.screenshot(path=str(SHOTS / "browser_architecture.png"))


def _save_small_png(raw: bytes, path: Path, limit: int = 300_000) -> None:
    """Store a screenshot as a PNG under ``limit`` bytes: 256-colour palette, shrunk if still too big."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(raw)).convert("RGB")
    while True:
        buf = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
        if buf.tell() <= limit or image.width < 700:
            path.write_bytes(buf.getvalue())
            return
        image = image.resize((int(image.width * 0.85), int(image.height * 0.85)), Image.LANCZOS)


@pytest.mark.skipif(not os.environ.get("UPDATE_SCREENSHOTS"),
                    reason="set UPDATE_SCREENSHOTS=1 to rewrite the README's assets/screenshots/")
def test_readme_screenshots(server, page):
    """One picture of each page in its default state (the feature maps page with provenance on)."""
    out = ROOT / "assets" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    ready = {"architecture": "Dense links", "feature_maps": "Enlarge channel", "attention": "How far to trust this map",
             "dense_block": "Concatenation, not addition"}
    for name, marker in ready.items():
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.goto(server if name == "architecture" else f"{server}/{name}")
        page.get_by_text(marker).first.wait_for(timeout=WAIT_MS)
        wait_idle(page, appear_ms=1_000)
        if name == "feature_maps":
            page.get_by_text("All inputs", exact=True).first.click()
            wait_idle(page)
        height = page.evaluate("() => document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
        page.set_viewport_size({"width": 1400, "height": min(3200, int(height) + 40)})
        time.sleep(2)  # plotly and images settle after the resize
        _save_small_png(page.screenshot(), out / f"{name}.png")
