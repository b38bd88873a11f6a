"""download: fetch and unpack fastai's MNIST archive with `untar_data`.

Reads:  params download.dataset; env MNIST_MIRROR (an offline source, optional).
Writes: OUT/<archive>.tgz, fastai's archive as fetched, and OUT/images.json,
        the image files fastai's `get_image_files` found in it, by split.

Only these two files are the stage's output, not the 70,000 extracted PNGs:
DVC would check every one of them on every `dvc repro`, several times the
cost of a no-op run of this pipeline (bench/dvc_dir_output.sh measures both).
preprocess decodes the listed images straight from the archive.
"""

import os
import shutil
import socket
import tarfile
import tempfile
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import urlparse

from digits.cli import StageError, path_args, run
from digits.files import ARCHIVE_ERRORS, atomic_dir, write_json
from digits.params import Download, load_params

# fastai is imported in the functions that use it, not with this module: importing it takes
# seconds that whoever imports the module for its other functions (the tests) need not wait.
# fastai 2.8 calls torch.jit.script at import, which torch 2.14 warns about on every run;
# it is noise to the user of this stage.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
SPLITS = {"mnist": ("training", "testing"), "mnist_sample": ("train", "valid")}
MIRROR_HELP = "set MNIST_MIRROR to a directory holding {name}, e.g. MNIST_MIRROR=../shared/data"


def fastai_url(dataset: str) -> str:
    from fastai.data.external import URLs

    return {"mnist": URLs.MNIST, "mnist_sample": URLs.MNIST_SAMPLE}[dataset]


def source_url(dataset: str, mirror: str | None) -> str:
    """The URL to fetch: fastai's own, or the archive of the same name in MNIST_MIRROR."""
    url = fastai_url(dataset)
    name = Path(urlparse(url).path).name
    if not mirror:
        return url
    if "://" in mirror:
        return mirror.rstrip("/") + "/" + name
    folder = Path(mirror)
    if not folder.is_dir():
        raise StageError(f"MNIST_MIRROR={mirror}: no such directory")
    if not (folder / name).is_file():
        raise StageError(f"MNIST_MIRROR={mirror}: has no {name}")
    return (folder / name).resolve().as_uri()


def check_reachable(url: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after a long network timeout, when offline. Behind a proxy
    (HTTPS_PROXY, HTTP_PROXY, NO_PROXY, as urllib and so fastai's download read them),
    the proxy is what must answer."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        via = urlparse(proxy if "://" in proxy else "http://" + proxy)
        host, port, how = via.hostname, via.port or 80, f" through proxy {proxy}"
    else:
        host, port, how = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80), ""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        name = Path(parsed.path).name
        raise StageError(
            f"cannot reach {url}{how} ({e}); offline? " + MIRROR_HELP.format(name=name)
        ) from None


def check_archive(archive: Path) -> None:
    """Refuse a broken archive, or one whose members would land outside the
    extraction directory, before anything is extracted. Python 3.11's tarfile
    (and so fastai's untar_data) extracts such members unless told otherwise."""
    root = "/extract-root"
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.name.startswith(("/", "\\")):  # data_filter would quietly strip it
                    raise tarfile.AbsolutePathError(member)
                tarfile.data_filter(member, root)
    except tarfile.FilterError as e:
        raise StageError(f"{archive.name}: unsafe member refused: {e}") from None
    except ARCHIVE_ERRORS as e:
        raise StageError(f"{archive.name}: truncated or not a gzip/tar archive ({e})") from None


def list_images(root: Path, splits: tuple[str, ...]) -> dict[str, dict[str, list[str]]]:
    """split -> class -> sorted image paths relative to root's parent, as fastai sees them."""
    from fastai.data.transforms import get_image_files

    found: dict[str, dict[str, list[str]]] = {}
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            raise StageError(f"{root.name}/{split}: split folder missing from the archive")
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not classes:
            raise StageError(f"{root.name}/{split}: has no class folders")
        found[split] = {}
        for label in classes:
            files = get_image_files(folder / label)
            if not files:
                raise StageError(f"{root.name}/{split}/{label}: class folder has no images")
            found[split][label] = sorted(str(f.relative_to(root.parent)) for f in files)
    return found


def download(dataset: str, out: Path, mirror: str | None) -> dict:
    from fastai.data.external import untar_data
    from fastdownload import download_url

    url = source_url(dataset, mirror)
    check_reachable(url)
    try:
        with atomic_dir(out) as staging:
            # Fetch first with fastai's own downloader, so the archive is checked
            # before anything is extracted; untar_data then finds it in place.
            archive = download_url(url, staging, show_progress=False)
            check_archive(archive)
            # Belt and braces: the stdlib's safe filter for the extraction itself,
            # and fastai's config and temporary files kept inside data/.
            tarfile.TarFile.extraction_filter = staticmethod(tarfile.data_filter)
            scratch = out.with_name(out.name + ".extract")
            shutil.rmtree(scratch, ignore_errors=True)
            tempfile.tempdir = str(scratch)
            try:
                scratch.mkdir(parents=True)
                # Absolute paths: fastdownload reads relative ones against `base` and would
                # not find the archive there, so it would fetch it a second time.
                root = untar_data(url, archive=staging.absolute(), data=scratch.absolute(), base=str(scratch))
                images = list_images(root, SPLITS[dataset])
            finally:
                tempfile.tempdir = None
                shutil.rmtree(scratch, ignore_errors=True)
                Path(f"{archive}.lock").unlink(missing_ok=True)  # fastdownload's lock file
            # "splits" keeps the (train, test) order: JSON keys get sorted.
            manifest = {
                "dataset": dataset,
                "archive": archive.name,
                "splits": list(SPLITS[dataset]),
                "images": images,
            }
            write_json(staging / "images.json", manifest)
        return manifest
    except (OSError, ValueError) as e:  # urllib and fastdownload raise these
        raise StageError(f"download of {url} failed: {e}") from None


def main() -> None:
    args = path_args(__doc__, "out")
    params = load_params(Download)
    manifest = download(params.dataset, args.out, os.environ.get("MNIST_MIRROR"))
    counts = {s: sum(map(len, c.values())) for s, c in manifest["images"].items()}
    print(f"download: {manifest['archive']} -> {args.out} {counts}")


if __name__ == "__main__":
    run(main)
