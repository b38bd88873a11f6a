"""python -m dvc_check [--base REV] [--no-real-run] [--config FILE] [--summary FILE]

Checks, in order, that the DVC pipeline in the current folder is honest; stops after the
first step that finds problems (steps 2 and 3 run together), one `invalid:` line each:
1. definitions; 2. stale results; 3. each stage in its sandbox; 4. the real rerun;
5. the metric thresholds. README.md says what each step sees and what it cannot.
"""

import argparse
import sys
from pathlib import Path

from dvc_check.config import NAME, ConfigError, load_config
from dvc_check.definitions import check_definitions
from dvc_check.messages import say
from dvc_check.pipeline import load_stages
from dvc_check.rerun import check_rerun
from dvc_check.sandbox import Workspace, check_sandboxed
from dvc_check.stale import check_stale
from dvc_check.thresholds import check_require, committed_metrics, write_summary


def validate(root: Path, config_path: Path, base: str | None, real_run: bool) -> list[str]:
    config = load_config(config_path)
    try:
        stages = load_stages(root)
    except Exception as e:  # DVC's own parse and schema errors
        return [say("unparsable", error=(str(e).strip().splitlines() or [repr(e)])[0])]
    workspace = Workspace(root, config, stages)
    committed = committed_metrics(root, config)
    steps = [
        lambda: check_definitions(root, stages),
        lambda: check_stale(root, stages) + check_sandboxed(workspace),
        lambda: check_rerun(root, stages, config) if real_run else [],
        lambda: check_require(root, config, base, committed),
    ]
    for step in steps:
        problems = step()
        if problems:
            return problems
    return []


def main() -> None:
    parser = argparse.ArgumentParser(prog="dvc_check", description="Check that a DVC pipeline is honest.")
    parser.add_argument("--base", help="git revision to compare metrics with (require: max_drop)")
    parser.add_argument("--no-real-run", action="store_true", help="skip step 4, the real dvc repro --force")
    parser.add_argument("--config", type=Path, default=Path(NAME), help=f"default: {NAME}")
    parser.add_argument("--summary", type=Path, help="append markdown diffs against --base to this file")
    args = parser.parse_args()
    root = Path.cwd().resolve()
    if not (root / ".dvc").is_dir():
        print(f"dvc_check: {root} is not the root of a DVC repository (no .dvc folder)", file=sys.stderr)
        sys.exit(2)
    try:
        problems = validate(root, args.config, args.base, not args.no_real_run)
    except ConfigError as e:
        print(f"dvc_check: {args.config}: {e}", file=sys.stderr)
        sys.exit(2)
    if args.summary and args.base:
        write_summary(root, args.summary, args.base)
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print("pipeline valid: definitions, dvc.lock, sandboxed reads and writes, results and metrics check out")


if __name__ == "__main__":
    main()
