"""Split the customers into a training and a test set."""

import os
import sys

import pandas as pd
import yaml
from sklearn.model_selection import train_test_split

params = yaml.safe_load(open("params.yaml"))["prepare"]
data = pd.read_csv(sys.argv[1])
train, test = train_test_split(data, test_size=params["test_size"], random_state=params["seed"])
os.makedirs(sys.argv[2], exist_ok=True)
train.to_csv(os.path.join(sys.argv[2], "train.csv"), index=False)
test.to_csv(os.path.join(sys.argv[2], "test.csv"), index=False)
