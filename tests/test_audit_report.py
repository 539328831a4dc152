"""report.html opens offline in headless Chromium and shows the scorecard, the figures and a gallery."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from densenet import audit, demo
from densenet.synthetic import write_dataset

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]

if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian package 'chromium')", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def test_report_opens_offline_and_shows_scorecard_and_gallery(tmp_path):
    torch.set_num_threads(1)
    model = demo.load()
    data = write_dataset(tmp_path / "data", 20)
    (data["images"] / "broken.png").write_bytes(b"not a picture")
    # No labels: the top prediction is explained; the unreadable file is skipped and listed.
    ds = audit.load_dataset(data["images"], model.class_names, boxes=data["boxes"], masks=data["masks"])
    result = audit.run_audit(model, ds, tmp_path / "out", audit.Settings(methods=("gradcam", "layercam")))
    report = result.report
    assert report is not None and report.is_file()

    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
            page = context.new_page()
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri())
            page.locator("#scorecard").wait_for(state="visible", timeout=30_000)
            page.locator(".js-plotly-plot .main-svg").first.wait_for(state="visible", timeout=30_000)
            assert page.locator("table").first.locator("tr").count() == 1 + 2 * 3  # 2 methods x 3 layers
            assert page.locator(".js-plotly-plot").count() == 2
            cases = page.locator(".gallery .case")
            assert cases.count() >= 4
            loaded = page.evaluate("Array.from(document.querySelectorAll('.gallery img'))"
                                   ".filter(i => i.complete && i.naturalWidth > 0).length")
            assert loaded == 2 * cases.count()
            assert page.get_by_text("broken.png").count() >= 1  # the skipped file is listed
            assert not errors, errors
            assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
            shots = ROOT / "screenshots"
            shots.mkdir(exist_ok=True)
            page.screenshot(path=str(shots / "audit_report.png"), full_page=True)
        finally:
            browser.close()
