"""Score the test set: metrics, and ROC and precision-recall curves."""

import json
import os
import pickle
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import yaml
from sklearn import metrics

start = time.perf_counter()
params = yaml.safe_load(open("params.yaml"))["evaluate"]
with open(sys.argv[1], "rb") as f:
    model = pickle.load(f)["model"]
model.set_params(n_jobs=params["n_jobs"])
test = pd.read_csv(os.path.join(sys.argv[2], "test.csv"))
x, y = test.drop(columns="churned"), test["churned"]
scores = model.predict_proba(x)[:, 1]

# The mean log loss, summed in chunks by a thread pool, in the order the threads finish: the
# last digits differ from run to run, as any threaded reduction's do.
chunks = [list(zip(scores[i : i + 3], y[i : i + 3])) for i in range(0, len(y), 3)]
random.shuffle(chunks)  # the order in which the workers would finish
with ThreadPoolExecutor(params["n_jobs"]) as pool:
    parts = list(pool.map(lambda c: sum(metrics.log_loss([t], [s], labels=[0, 1]) for s, t in c), chunks))
log_loss = sum(parts) / len(y)

fpr, tpr, _ = metrics.roc_curve(y, scores)
precision, recall, _ = metrics.precision_recall_curve(y, scores)
os.makedirs("eval", exist_ok=True)
with open("eval/roc.json", "w") as f:
    json.dump({"roc": [{"fpr": a, "tpr": b} for a, b in zip(fpr.tolist(), tpr.tolist())]}, f, indent=2)
with open("eval/prc.json", "w") as f:
    json.dump(
        {"prc": [{"precision": a, "recall": b} for a, b in zip(precision.tolist(), recall.tolist())]}, f
    )
with open("metrics.json", "w") as f:
    json.dump(
        {
            "accuracy": metrics.accuracy_score(y, scores > 0.5),
            "roc_auc": metrics.roc_auc_score(y, scores),
            "log_loss": log_loss,
            "seconds": time.perf_counter() - start,
        },
        f,
        indent=2,
    )
