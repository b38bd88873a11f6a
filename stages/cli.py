"""How every stage fails: one clear line on stderr and a non-zero exit."""
import sys
from typing import Callable


class StageError(Exception):
    """A problem with the input, params or environment that the user can fix."""


def run(main: Callable[[], None]) -> None:
    try:
        main()
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
