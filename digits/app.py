"""A page where you draw a digit and watch the model read it.

    bash scripts/app.sh [--model data/model.pt] [--port 8000] [--host 127.0.0.1]

installs requirements-app.txt (FastAPI and uvicorn) and serves the page on
http://127.0.0.1:8000, this machine only unless --host says otherwise. The page
posts the canvas as a PNG whenever it changes; the server prepares it exactly as
`python -m digits.predict` prepares a file and answers with the label and every
class's probability.

A hostile request costs little and gets one line: a body over MAX_BODY bytes is
refused (413) without being read whole, an image over MAX_PIXELS pixels (413)
without being decoded, anything else unreadable gets 400. The decoding and the
model run in at most WORKERS threads at once; other requests wait their turn
without holding a thread, so the page keeps answering everyone.
"""

import argparse
import base64
import binascii
import ipaddress
import os
import sys
import warnings
from pathlib import Path

import anyio
import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image
from pydantic import BaseModel

from digits.cli import run
from digits.models import load_model
from digits.predict import NoDigit, TooLarge, Unreadable, classify, project_path, read_image

PAGE = Path(__file__).with_name("static") / "draw.html"
MAX_BODY = 1_000_000  # bytes; the 280×280 canvas as a data URL is 5 to 40 KB
MAX_PIXELS = 1_000_000  # the canvas has 78,400; decoding a million takes milliseconds
WORKERS = len(os.sched_getaffinity(0))  # requests decoded or classified at once: one per CPU


class Drawing(BaseModel):
    image: str  # the canvas as a data: URL (canvas.toDataURL())


def make_app(model_file: Path) -> FastAPI:
    model, checkpoint = load_model(model_file)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    classes = checkpoint["classes"]
    limiter = anyio.CapacityLimiter(WORKERS)
    app = FastAPI(title="Draw a digit")

    def answer(data_url: str) -> dict:
        """The CPU work of one request, run in a worker thread."""
        try:
            png = base64.b64decode(data_url.split(",", 1)[-1], validate=True)
            digit = read_image(png, MAX_PIXELS)
        except NoDigit as e:  # a blank canvas: nothing to read yet
            return {"label": None, "probabilities": {}, "error": str(e)}
        except TooLarge as e:
            raise HTTPException(413, str(e)) from None
        except (binascii.Error, Unreadable) as e:
            raise HTTPException(400, f"not a PNG data URL ({e})") from None
        probs = classify(model, checkpoint, digit[np.newaxis], device)[0]
        return {
            "label": classes[int(probs.argmax())],
            "probabilities": {c: round(float(p), 4) for c, p in zip(classes, probs)},
        }

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, e: RequestValidationError) -> JSONResponse:
        # FastAPI's 422 lists every field error; one line says what the page expects.
        return JSONResponse({"detail": 'expected JSON {"image": "data:image/png;base64,..."}'}, 400)

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(PAGE)

    @app.post("/predict", max_body_size=MAX_BODY)
    async def predict(drawing: Drawing) -> dict:
        return await anyio.to_thread.run_sync(answer, drawing.image, limiter=limiter)

    return app


def is_local(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", type=Path, default=project_path("model"), help="default: dvc.yaml's model")
    parser.add_argument("--host", default="127.0.0.1", help="default: this machine only")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.model is None:
        parser.error("--model is required outside the project (no dvc.yaml here)")
    if not is_local(args.host):
        print(f"warning: serving on {args.host}: anyone who can reach it can use the page", file=sys.stderr)
    # Pillow warns about images past its own limit; ours is lower and answered with a 413.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    print(f"draw a digit at http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    uvicorn.run(make_app(args.model), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    run(main)
