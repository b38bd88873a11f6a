"""How every stage ends: when it fails, one clear line on stderr and a non-zero exit."""

import argparse
import gc
import sys
from collections.abc import Callable
from pathlib import Path


class StageError(Exception):
    """A problem with the input, params or environment that the user can fix."""


def run(main: Callable[[], None]) -> None:
    # stages/__init__.py turned the collector off for a stage's imports: what they made is
    # frozen, never walked again (as at the exit below), and the collector is back on for the run.
    gc.freeze()
    gc.enable()
    try:
        main()
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        # At shutdown Python's garbage collector walks every object still alive (190,000 after
        # importing torch, 290,000 after fastai): 0.25 s and 0.7 s of CPU here (docs/speed.md).
        # Frozen, they are skipped. The cost: finalizers (__del__) of objects in reference
        # cycles no longer run at exit, so what a stage opens, it closes with `with`.
        gc.freeze()


def path_args(doc: str, *names: str) -> argparse.Namespace:
    """Parse `--name PATH` for each name: dvc.yaml passes every path a stage uses."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    for name in names:
        parser.add_argument(f"--{name}", type=Path, required=True)
    return parser.parse_args()
