"""Accuracy of the exported learner on every image, as a user of the model would load it."""

import json
import sys

from fastai.vision.all import get_image_files, load_learner


def label_of(path):  # the exported learner refers to it by name
    return path.parent.name


learn = load_learner(sys.argv[1])
files = get_image_files(sys.argv[2])
predictions = learn.get_preds(dl=learn.dls.test_dl(files))[0].argmax(dim=1)
right = sum(learn.dls.vocab[int(p)] == label_of(f) for p, f in zip(predictions, files))
with open("evaluation.json", "w") as f:
    json.dump({"accuracy": right / len(files), "images": len(files)}, f, indent=2)
