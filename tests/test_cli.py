"""How a stage starts and ends (stages/__init__.py, digits/cli.py): the collector off while it
imports, back on for its run; one clear line and a non-zero exit when it fails."""

import gc
import importlib.util
import sys

from digits.cli import StageError, run
from support import ROOT, run_here


def import_stages_package() -> None:
    """stages/__init__.py run afresh, as Python runs it on the way to a stage's module."""
    spec = importlib.util.spec_from_file_location("stages", ROOT / "stages" / "__init__.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_a_stage_imports_with_the_collector_off_and_runs_with_it_on(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["-m", "--out", "x"])  # as `python -m stages.x` while it imports
    seen = []
    gc.unfreeze()
    try:
        import_stages_package()
        assert not gc.isenabled()
        run(lambda: seen.append((gc.isenabled(), gc.get_freeze_count() > 0)))
    finally:
        gc.enable()
        gc.unfreeze()
    assert seen == [(True, True)]  # main() ran with the collector on, what was imported frozen
    for argv in (["pytest"], ["pytest", "-m", "slow"]):  # a test or notebook that imports a stage
        monkeypatch.setattr(sys, "argv", argv)
        import_stages_package()
        assert gc.isenabled(), argv


def test_a_stage_error_is_one_line_and_exit_status_1(monkeypatch, capsys, tmp_path):
    def main() -> None:
        raise StageError("data/x.pt: missing")

    result = run_here(monkeypatch, capsys, main, tmp_path)
    assert result.returncode == 1
    assert result.stderr == "error: data/x.pt: missing\n"
