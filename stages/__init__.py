"""MNIST → digit classifier, one module per DVC stage (see dvc.yaml)."""
