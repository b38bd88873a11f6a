"""Fit a random forest; keep it with the script that made it, as fastai's learn.export does."""

import os
import pickle
import sys

import pandas as pd
import yaml
from dvclive import Live
from sklearn.ensemble import RandomForestClassifier

params = yaml.safe_load(open("params.yaml"))["train"]
train = pd.read_csv(os.path.join(sys.argv[1], "train.csv"))
x, y = train.drop(columns="churned"), train["churned"]
model = RandomForestClassifier(
    n_estimators=params["n_estimators"], max_depth=params["max_depth"], random_state=params["seed"]
)
model.fit(x, y)
os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
with open(sys.argv[2], "wb") as f:
    pickle.dump({"model": model, "made_by": os.path.abspath(__file__)}, f)

with Live() as live:
    live.log_metric("train_accuracy", model.score(x, y))
    live.log_artifact(sys.argv[2], type="model", name="churn-model")
