"""The drawing page: its /predict endpoint, and strokes drawn with a mouse in headless Chromium."""

import base64
import math
import os
import shutil
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from digits import app as app_module
from digits.app import MAX_BODY, MAX_PIXELS, is_local, make_app
from fixtures import STROKES, blank_png, drawn, png_bytes
from support import ROOT, free_port, wait_until_serving


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


def test_hostile_images_get_400_or_413_with_one_line_and_the_page_still_answers(drawn_model, tmp_path):
    client = TestClient(make_app(drawn_model))
    bomb = blank_png(tmp_path / "bomb.png", 30_000, 30_000).read_bytes()
    side = math.isqrt(MAX_PIXELS) + 1  # past the page's limit, far below the command's
    big = blank_png(tmp_path / "big.png", side, side, bit_depth=8).read_bytes()
    cases = [
        ({"image": data_url(bomb)}, 413, f"too large: over the limit of {MAX_PIXELS:,} pixels"),
        ({"image": data_url(big)}, 413, f"too large: {side}×{side} pixels, over the limit of {MAX_PIXELS:,}"),
        ({"image": data_url(png_bytes(drawn("7"))[:600])}, 400, "not a PNG data URL (cannot read it: image"),
        ({"image": data_url(b"")}, 400, "not a PNG data URL (not a PNG or JPEG image)"),
        ({"image": "data:image/png;base64,%%%"}, 400, "not a PNG data URL (Only base64 data is allowed)"),
        (
            {"picture": data_url(png_bytes(drawn("7")))},
            400,
            'expected JSON {"image": "data:image/png;base64,...',
        ),
        ({"image": "A" * MAX_BODY}, 413, "Content Too Large"),  # refused before it is read
    ]
    for body, status, reason in cases:
        response = client.post("/predict", json=body)
        detail = response.json()["detail"] if "json" in response.headers["content-type"] else response.text
        assert (response.status_code, detail[: len(reason)]) == (status, reason)
        assert "\n" not in detail
    not_json = client.post("/predict", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["detail"].startswith("expected JSON")
    good = client.post("/predict", json={"image": data_url(png_bytes(drawn("7", seed=3, jitter=10)))})
    assert good.status_code == 200 and good.json()["label"] == "7"


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False), ("192.168.1.20", False)],
)
def test_binds_to_this_machine_unless_told_and_warns_when_not(host, local, drawn_model, monkeypatch, capsys):
    assert is_local(host) == local
    served = {}
    monkeypatch.setattr(app_module.uvicorn, "run", lambda app, host, port, **_: served.update(host=host))
    monkeypatch.setattr(sys, "argv", ["digits.app", "--model", str(drawn_model), "--host", host])
    app_module.main()
    assert served == {"host": host}
    warning = f"warning: serving on {host}: anyone who can reach it can use the page\n"
    assert capsys.readouterr().err == ("" if local else warning)
    monkeypatch.setattr(sys, "argv", ["digits.app", "--model", str(drawn_model)])
    app_module.main()
    assert served == {"host": "127.0.0.1"}


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
