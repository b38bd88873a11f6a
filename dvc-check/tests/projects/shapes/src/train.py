"""Train a small classifier of shapes with fastai, logged by dvclive's fastai callback."""

import sys
from pathlib import Path

import yaml
from dvclive.fastai import DVCLiveCallback
from fastai.vision.all import (
    CategoryBlock,
    DataBlock,
    ImageBlock,
    Learner,
    PILImageBW,
    RandomSplitter,
    Resize,
    accuracy,
    get_image_files,
    nn,
    set_seed,
)

params = yaml.safe_load(open("params.yaml"))["train"]
set_seed(params["seed"], reproducible=True)


def label_of(path):
    return path.parent.name


blocks = DataBlock(
    blocks=(ImageBlock(cls=PILImageBW), CategoryBlock),
    get_items=get_image_files,
    splitter=RandomSplitter(valid_pct=0.25, seed=params["seed"]),
    get_y=label_of,
    item_tfms=Resize(params["size"]),
)
dls = blocks.dataloaders(sys.argv[1], bs=params["batch_size"], num_workers=0)
model = nn.Sequential(nn.Flatten(), nn.Linear(params["size"] ** 2, 16), nn.ReLU(), nn.Linear(16, dls.c))
learn = Learner(dls, model, metrics=accuracy)
learn.fit(params["epochs"], params["lr"], cbs=[DVCLiveCallback()])  # as dvclive's docs show it
learn.path = Path(".")
Path(sys.argv[2]).parent.mkdir(parents=True, exist_ok=True)
learn.export(sys.argv[2])
