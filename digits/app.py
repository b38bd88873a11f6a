"""A page where you draw a digit and watch the model read it.

    bash scripts/app.sh [--model data/model.pt] [--port 8000]

installs requirements-app.txt (FastAPI and uvicorn) and serves the page on
http://127.0.0.1:8000. The page posts the canvas as a PNG whenever it changes;
the server prepares it exactly as `python -m digits.predict` prepares a file
and answers with the label and every class's probability.
"""

import argparse
import base64
import binascii
import io
from pathlib import Path

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel

from digits.cli import run
from digits.models import load_model
from digits.predict import classify, project_path, to_mnist

PAGE = Path(__file__).with_name("static") / "draw.html"


class Drawing(BaseModel):
    image: str  # the canvas as a data: URL (canvas.toDataURL())


def make_app(model_file: Path) -> FastAPI:
    model, checkpoint = load_model(model_file)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    app = FastAPI(title="Draw a digit")

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(PAGE)

    @app.post("/predict")
    def predict(drawing: Drawing) -> dict:
        try:
            png = base64.b64decode(drawing.image.split(",", 1)[-1], validate=True)
            with Image.open(io.BytesIO(png)) as image:
                digit = to_mnist(image)
        except ValueError as e:  # a blank canvas: nothing to read yet
            return {"label": None, "probabilities": {}, "error": str(e)}
        except (binascii.Error, OSError, UnidentifiedImageError) as e:
            raise HTTPException(400, f"not a PNG data URL ({e})") from None
        probs = classify(model, checkpoint, digit[np.newaxis], device)[0]
        classes = checkpoint["classes"]
        return {
            "label": classes[int(probs.argmax())],
            "probabilities": {c: round(float(p), 4) for c, p in zip(classes, probs)},
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", type=Path, default=project_path("model"), help="default: dvc.yaml's model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.model is None:
        parser.error("--model is required outside the project (no dvc.yaml here)")
    print(f"draw a digit at http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    uvicorn.run(make_app(args.model), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    run(main)
