import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from digits.cli import StageError
from fixtures import make_archive
from stages import download as dl
from support import ROOT, run_here

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def no_proxy(monkeypatch) -> None:
    """No proxy from the caller's environment, in either case: a test names its own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_download_from_mirror_lists_images_like_fastai(tmp_path):
    mirror = tmp_path / "mirror"
    make_archive(mirror / "mnist_png.tgz", extra={"mnist_png/training/0/README.txt": b"not an image"})
    out = tmp_path / "data" / "download"
    manifest = dl.download("mnist", out, str(mirror))
    assert sorted(p.name for p in out.iterdir()) == ["images.json", "mnist_png.tgz"]
    assert json.loads((out / "images.json").read_text()) == manifest
    assert manifest["splits"] == ["training", "testing"]
    assert {s: sorted(c) for s, c in manifest["images"].items()} == {
        "training": ["0", "1", "2"],
        "testing": ["0", "1", "2"],
    }
    assert len(manifest["images"]["training"]["0"]) == 12  # README.txt ignored, as get_image_files would
    assert all(p.endswith(".png") for c in manifest["images"]["training"].values() for p in c)
    assert not list(tmp_path.glob("data/*.partial")) and not list(tmp_path.glob("data/*.extract"))


def test_mirror_errors_name_the_problem(tmp_path):
    with pytest.raises(StageError, match=r"MNIST_MIRROR=.*nope: no such directory"):
        dl.source_url("mnist", str(tmp_path / "nope"))
    with pytest.raises(StageError, match=r"MNIST_MIRROR=.*: has no mnist_sample.tgz"):
        dl.source_url("mnist_sample", str(tmp_path))
    assert dl.source_url("mnist", "https://example.org/mirror/") == "https://example.org/mirror/mnist_png.tgz"
    from fastai.data.external import URLs

    assert dl.source_url("mnist", None) == URLs.MNIST


def test_offline_without_mirror_fails_fast_naming_url_and_mirror(tmp_path, monkeypatch, no_proxy):
    url = "https://host.invalid/fastai/mnist_png.tgz"  # .invalid never resolves
    monkeypatch.setattr(dl, "fastai_url", lambda dataset: url)
    with pytest.raises(
        StageError, match=r"cannot reach https://host.invalid/fastai/mnist_png.tgz.*MNIST_MIRROR"
    ):
        dl.download("mnist", tmp_path / "out", None)
    assert not (tmp_path / "out").exists()


def unsafe_member(kind: str, tmp_path: Path) -> tarfile.TarInfo:
    info = tarfile.TarInfo(
        {"dotdot": "mnist_png/../../evil.txt", "absolute": str(tmp_path / "evil.txt")}.get(
            kind, "mnist_png/training/0/evil.png"
        )
    )
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, str(tmp_path / "evil.txt")
    if kind == "relsymlink":
        info.type, info.linkname = tarfile.SYMTYPE, "../../../../evil.txt"
    if kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, "../../../../evil.txt"
    return info


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "relsymlink", "hardlink"])
def test_unsafe_archive_is_refused_before_anything_is_written(tmp_path, kind):
    mirror = tmp_path / "mirror"
    good = make_archive(mirror / "mnist_png.tgz")
    with tarfile.open(good) as src:
        members = [(m, src.extractfile(m).read()) for m in src]
    evil = unsafe_member(kind, tmp_path)
    with tarfile.open(good, "w:gz") as tar:
        tar.addfile(evil, io.BytesIO(b"pwned") if evil.isfile() else None)
        for m, data in members:
            tar.addfile(m, io.BytesIO(data))
    out = tmp_path / "work" / "data" / "download"
    out.mkdir(parents=True)
    (out / "previous.txt").write_text("good")
    with pytest.raises(StageError, match="unsafe member refused"):
        dl.download("mnist", out, str(mirror))
    assert not list(tmp_path.rglob("evil*"))
    assert (out / "previous.txt").read_text() == "good"  # previous output untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["download"]


@pytest.mark.parametrize("damage", ["truncated", "not_gzip"])
def test_broken_archive_is_refused(tmp_path, damage):
    archive = make_archive(tmp_path / "mirror" / "mnist_png.tgz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"<html>404</html>" * 50)
    with pytest.raises(StageError, match="mnist_png.tgz: truncated or not a gzip/tar archive"):
        dl.download("mnist", tmp_path / "out", str(tmp_path / "mirror"))
    assert not (tmp_path / "out").exists()


def test_missing_split_and_empty_class_are_named(tmp_path):
    make_archive(tmp_path / "m1" / "mnist_png.tgz", skip={"mnist_png/testing/"})
    with pytest.raises(StageError, match="mnist_png/testing: split folder missing"):
        dl.download("mnist", tmp_path / "out", str(tmp_path / "m1"))
    make_archive(
        tmp_path / "m2" / "mnist_png.tgz",
        skip={"mnist_png/testing/2/"},
        extra={"mnist_png/testing/2/notes.txt": b"no images here"},
    )
    with pytest.raises(StageError, match="mnist_png/testing/2: class folder has no images"):
        dl.download("mnist", tmp_path / "out", str(tmp_path / "m2"))
    assert not (tmp_path / "out").exists()


class Origin(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Proxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy for plain HTTP: whatever host a GET names, it asks `origin`."""

    origin = ""
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # not through any proxy
        with direct.open(self.origin + urlparse(self.path).path) as answer:
            body = answer.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def servers(tmp_path, no_proxy):
    make_archive(tmp_path / "mirror" / "fastai" / "mnist_png.tgz")
    origin = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Origin, directory=str(tmp_path / "mirror"))
    )
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    Proxy.origin, Proxy.seen = f"http://127.0.0.1:{origin.server_port}", []
    for server in (origin, proxy):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{proxy.server_port}"
    for server in (origin, proxy):
        server.shutdown()


def download_stage(folder: Path) -> subprocess.CompletedProcess:
    """The download stage as a process in folder/, with the environment's proxies (servers'
    no_proxy)."""
    shutil.copy(ROOT / "params.yaml", folder / "params.yaml")
    return subprocess.run(
        [sys.executable, "-m", "stages.download", "--out", "out"],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MNIST_MIRROR": "http://mirror.invalid/fastai"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_download_goes_through_the_proxy_the_environment_names(tmp_path, servers, monkeypatch, capsys):
    # mirror.invalid never resolves: only a proxy can fetch it, as on a proxy-only network. The
    # stage's main() in this process (fastai imported once), with those variables set here.
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv("MNIST_MIRROR", "http://mirror.invalid/fastai")
    monkeypatch.setenv("HTTP_PROXY", servers)
    result = run_here(monkeypatch, capsys, dl.main, tmp_path, "--out", "out")
    assert result.returncode == 0, result.stderr
    assert Proxy.seen == ["http://mirror.invalid/fastai/mnist_png.tgz"]
    assert json.loads((tmp_path / "out" / "images.json").read_text())["archive"] == "mnist_png.tgz"


def test_without_the_proxy_or_with_a_dead_one_the_error_says_which(tmp_path, servers, monkeypatch):
    result = download_stage(tmp_path)  # the stage, as a process: one line, exit status 1
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot reach http://mirror.invalid/fastai/mnist_png.tgz (")
    # The same check in this process, with the environment's proxy variables as urllib reads them.
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens there
    monkeypatch.setenv("http_proxy", dead)
    with pytest.raises(StageError, match=f"through proxy {dead}"):
        dl.download("mnist", tmp_path / "out", "http://mirror.invalid/fastai")
    monkeypatch.delenv("http_proxy")
    monkeypatch.setenv("HTTP_PROXY", dead)
    monkeypatch.setenv("NO_PROXY", "mirror.invalid")
    with pytest.raises(StageError, match="cannot reach http://mirror.invalid/") as bypassed:
        dl.download("mnist", tmp_path / "out", "http://mirror.invalid/fastai")
    assert "through proxy" not in str(bypassed.value)
    assert not (tmp_path / "out").exists() and Proxy.seen == []
