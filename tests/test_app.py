"""The drawing page: its /predict endpoint, and strokes drawn with a mouse in headless Chromium."""

import base64
import os
import shutil
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from conftest import ROOT, free_port, wait_until_serving
from digits.app import make_app
from digits.fixtures import STROKES, drawn, png_bytes


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def test_predict_endpoint_reads_a_drawing_and_a_blank_canvas(drawn_model):
    client = TestClient(make_app(drawn_model))
    assert "<canvas" in client.get("/").text
    result = client.post(
        "/predict", json={"image": data_url(png_bytes(drawn("7", seed=3, jitter=10)))}
    ).json()
    assert result["label"] == "7" and set(result["probabilities"]) == {"0", "1", "7"}
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-3
    blank = client.post("/predict", json={"image": data_url(png_bytes(drawn("1").point(lambda _: 0)))}).json()
    assert blank["label"] is None and "no digit found" in blank["error"]
    bad = client.post("/predict", json={"image": "data:image/png;base64,bm90IGFuIGltYWdl"})
    assert bad.status_code == 400 and "not a PNG data URL" in bad.json()["detail"]


@pytest.fixture
def server(drawn_model):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "digits.app", "--model", str(drawn_model), "--port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_drawing_with_the_mouse_in_chromium_shows_the_digit(server):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser = None
    if not browser:
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail("REQUIRE_BROWSER is set but chromium or playwright is missing")
        pytest.skip("needs chromium and playwright, which .ci/run installs")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=browser, args=["--no-sandbox"])
        page = chromium.new_page()
        page.goto(server)
        box = page.locator("#canvas").bounding_box()
        for digit, points in STROKES.items():
            page.click("#clear")
            assert page.text_content("#label") == ""
            (x, y), *rest = points
            page.mouse.move(box["x"] + x, box["y"] + y)
            page.mouse.down()
            for x, y in rest:
                page.mouse.move(box["x"] + x, box["y"] + y, steps=4)
            # The answer updates while drawing, before the button is let go.
            page.wait_for_function("document.getElementById('label').textContent !== ''", timeout=30_000)
            page.mouse.up()
            page.wait_for_function(
                "document.getElementById('status').textContent === 'ready'", timeout=30_000
            )
            assert page.text_content("#label") == digit
            assert page.locator("#probabilities tr").count() == 3
        chromium.close()
