"""Classify one image with the packed model: python predict.py model.pkl image.png"""

import sys

from fastai.vision.all import PILImageBW, load_learner


def label_of(path):
    return path.parent.name


if __name__ == "__main__":
    print(load_learner(sys.argv[1]).predict(PILImageBW.create(sys.argv[2]))[0])
