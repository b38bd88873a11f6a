"""The sandbox's search for undeclared params, on its own: `narrow` with a stand-in for the
reruns, so the test can count them."""

from dvc_check.narrow import narrow

PARAMS = {
    "other": {"x": 0},
    "prepare": {"split": 0.2, "seed": 1},
    "train": {"lr": 0.1, "epochs": 3, "seed": 2},
}


def test_narrow_names_the_keys_and_sections_a_stage_needs_and_asks_no_rerun_it_can_answer():
    # The stage reads prepare.seed, and the train section whole (any key missing changes it).
    needs = {("params.yaml", "prepare.seed"), *{("params.yaml", f"train.{k}") for k in PARAMS["train"]}}
    tried = []

    def enough(extra: dict[str, list[str]]) -> bool:  # one rerun of the stage, with these keys too
        given = frozenset((file, key) for file, keys in extra.items() for key in keys)
        tried.append(given)
        return needs <= given

    assert narrow({"params.yaml": PARAMS}, {"params.yaml": []}, enough) == ["prepare.seed", "train"]
    # One rerun without each section (other, tried first, is dropped); then without prepare.split,
    # which it does not need, so it needs prepare.seed: no rerun asks; then without each half of
    # train.
    assert len(tried) == 3 + 1 + 2, tried


def test_narrow_asks_again_where_what_it_knew_no_longer_holds():
    # The stage reads train.lr only when model.kind is set, and its own default for model.kind
    # gives the same result: it needs no undeclared key. Without train it differs only while
    # model is there; once model is dropped, dropping train.lr no longer tells it apart.
    def enough(extra: dict[str, list[str]]) -> bool:
        given = {key for keys in extra.values() for key in keys}
        return "model.kind" not in given or "train.lr" in given

    full = {"params.yaml": {"train": {"lr": 0.1, "epochs": 3}, "model": {"kind": "cnn"}}}
    assert narrow(full, {"params.yaml": []}, enough) == []
