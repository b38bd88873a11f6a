"""The drawing page under load: latency and throughput at 1, 10 and 30 concurrent clients.

    .venv/bin/python bench/load.py [--model data/model.pt] [--requests 300] [--archive ARCHIVE]

(ARCHIVE: ../shared/data/mnist_png.tgz). Starts `python -m digits.app` on a free
port of 127.0.0.1 (loopback only) and stops it at the end. Each client is a thread
with its own keep-alive connection that posts canvas-like drawings one after
another, as the page does: real MNIST test digits (drawn at random, seeded) scaled
up to the 280×280 canvas, as PNG data URLs. Each level sends --requests requests in
all, split evenly between its clients; latency is from sending a request to reading
its answer, requests/s is all of them over the level's wall time, and every answer
is checked against the digit's true label.

Then 10 ordinary clients again, while one more client sends hostile images back to
back (a 30000×30000 PNG bomb, a 12000×12000 blank PNG, a truncated PNG, a body over
the page's limit): the ordinary clients' latency, and what the hostile one got back.
Prints a table and writes it into BENCHMARKS.md. Needs the trained model.
"""

import argparse
import base64
import http.client
import io
import json
import math
import os
import platform
import random
import socket
import statistics
import struct
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import torch
from PIL import Image
from sections import write_section  # bench/, the script's own folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from digits.app import MAX_BODY  # noqa: E402
from digits.predict import project_path  # noqa: E402

LEVELS = (1, 10, 30)


def drawings(archive: Path, n: int, seed: int) -> list[tuple[str, str]]:
    """n (true label, JSON body) pairs: test digits scaled to the page's 280×280 canvas."""
    with tarfile.open(archive) as tar:
        members = sorted(
            (m for m in tar.getmembers() if "/testing/" in m.name and m.isfile()), key=lambda m: m.name
        )
        chosen = random.Random(seed).sample(members, n)
        out = []
        for m in chosen:
            image = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("L").resize((280, 280))
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
            out.append((Path(m.name).parent.name, json.dumps({"image": url})))
        return out


def blank_png(width: int, height: int, bit_depth: int) -> bytes:
    """A valid one-colour grey PNG, compressed row by row (never whole in memory)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(1)
    row = bytes(1 + math.ceil(width * bit_depth / 8))
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def hostile_bodies() -> list[str]:
    def body(png: bytes) -> str:
        return json.dumps({"image": "data:image/png;base64," + base64.b64encode(png).decode()})

    canvas = io.BytesIO()
    Image.new("L", (280, 280)).save(canvas, format="PNG")
    return [
        body(blank_png(30_000, 30_000, 1)),
        body(blank_png(12_000, 12_000, 8)),
        body(canvas.getvalue()[:100]),
        json.dumps({"image": "A" * MAX_BODY}),
    ]


def post(conn: http.client.HTTPConnection, body: str) -> tuple[float, int, dict]:
    start = time.perf_counter()
    conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    seconds = time.perf_counter() - start
    try:
        return seconds, response.status, json.loads(data)
    except ValueError:
        return seconds, response.status, {"detail": data.decode(errors="replace")}


def run_clients(port: int, work: list[list[tuple[str, str]]], stop: threading.Event | None = None) -> dict:
    """One thread per list in work, each posting its drawings in turn; their latencies and answers."""
    latencies, right, lock = [], [0], threading.Lock()

    def client(items: list[tuple[str, str]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for label, body in items:
            seconds, status, answer = post(conn, body)
            with lock:
                latencies.append(seconds)
                right[0] += status == 200 and answer.get("label") == label
        conn.close()

    threads = [threading.Thread(target=client, args=(items,)) for items in work]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if stop:
        stop.set()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"n": len(latencies), "right": right[0], "p50": q[49], "p95": q[94], "rps": len(latencies) / wall}


def hostile_client(port: int, bodies: list[str], stop: threading.Event, got: list) -> None:
    """Posts the hostile bodies round and round until stop is set; (status, seconds) of each answer.
    A new connection each time: the server may close one after refusing a request."""
    while not stop.is_set():
        for body in bodies:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            start = time.perf_counter()
            try:
                status = post(conn, body)[1]
            except (ConnectionError, http.client.HTTPException):
                status = "reset"
            got.append((status, time.perf_counter() - start))
            conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, port: int, root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "digits.app", "--model", str(model.resolve()), "--port", str(port)]
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL)
    for _ in range(300):  # a minute at most
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return server
        except OSError:
            if server.poll() is not None:
                sys.exit(f"error: the page did not start (exit status {server.returncode})")
            time.sleep(0.2)
    server.kill()
    sys.exit("error: the page did not answer within a minute")


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory so far (Linux's VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


def load(port: int, items: list, hostile: list[str]) -> tuple[dict, list]:
    """One round: each level in turn, then 10 clients beside a hostile one; the hostile one's answers."""
    rows = {f"{n} client{'s' * (n > 1)}": run_clients(port, split(items, n)) for n in LEVELS}
    stop, got = threading.Event(), []
    attacker = threading.Thread(target=hostile_client, args=(port, hostile, stop, got))
    attacker.start()
    rows["10 clients, and 1 sending hostile images"] = run_clients(port, split(items, 10), stop)
    attacker.join()
    return rows, got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", type=Path, default=project_path("model", ROOT))
    parser.add_argument("--archive", type=Path, default=ROOT.parent / "shared/data/mnist_png.tgz")
    parser.add_argument("--requests", type=int, default=300, help="per level and round")
    parser.add_argument("--rounds", type=int, default=3, help="the table shows each number's median")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to serve (another revision)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if not args.model or not args.model.is_file():
        sys.exit(f"error: {args.model}: missing; run `dvc repro` or pass --model")
    busy = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    checkpoint = torch.load(args.model, weights_only=True)  # to name the model in the table's caption
    model = f"`{checkpoint['model']}`, {len(checkpoint['classes'])} classes"
    items = drawings(args.archive, args.requests, args.seed)
    hostile = hostile_bodies()
    port = free_port()
    server = start_server(args.model, port, args.root)
    try:
        run_clients(port, [items[:20]])  # warm-up: the first answers load lazily initialised code
        rounds = [load(port, items, hostile) for _ in range(args.rounds)]
        peak = peak_memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lines = []
    for what in rounds[0][0]:
        runs = [rows[what] for rows, _ in rounds]
        p50, p95, rps = (statistics.median(r[key] for r in runs) for key in ("p50", "p95", "rps"))
        right = f"{sum(r['right'] for r in runs)} of {sum(r['n'] for r in runs)}"
        lines.append(f"| {what} | {right} | {p50 * 1e3:.0f} ms | {p95 * 1e3:.0f} ms | {rps:.0f} |")
    got = [answer for _, answers in rounds for answer in answers]
    statuses = sorted({status for status, _ in got}, key=str)
    hostile_got = ", ".join(f"{sum(s == status for s, _ in got)} × {status}" for status in statuses)
    seconds = [t for _, t in got]
    hostile_got += f", in {statistics.median(seconds) * 1e3:.0f} ms (median; slowest {max(seconds):.1f} s)"
    header = ["| clients | right answers | p50 | p95 | requests/s |", "|---|---|---|---|---|"]
    table = "\n".join(header + lines)
    print(table)
    print(f"hostile client: {hostile_got}; the server's peak memory: {peak:.0f} MB")
    if args.no_write:
        return
    cpus = len(os.sched_getaffinity(0))
    write_section(
        "bench/load.py",
        f"""## The drawing page under load

`.venv/bin/python bench/load.py --model {args.model}`

The model: {model}. The page (`python -m digits.app`) on 127.0.0.1 and its clients share the same
{cpus} CPUs ({platform.machine()}; load average {busy:.1f} from other work when the run began). Each level
posts {args.requests} of the `testing/` digits of `{args.archive.name}` (seed {args.seed}), scaled to the
280×280 canvas as PNG data URLs; each client keeps one connection and sends its next drawing when the
last is answered, as the page does. Latency is per request, from sending to reading the answer; each
number is the median of {args.rounds} rounds, the right answers are summed over them.

{table}

The hostile client sent a 30000×30000 PNG bomb, a 12000×12000 blank PNG, a truncated PNG and a body
over `MAX_BODY`, round and round while the last row ran, and got {hostile_got}.
The server's peak resident memory over the whole run: {peak:.0f} MB.""",
    )


if __name__ == "__main__":
    main()
