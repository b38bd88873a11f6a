"""`dvc push --run-cache`, and the outputs it leaves behind, so no team mate recomputes a stage.

    python scripts/push_runs.py [--remote NAME]

DVC 3 pushes a run-cache entry (what a stage ran with and produced) but not the
copies of its uncached outputs that the entry points to: the metrics and plots
files git would track. Without them a team mate's `dvc repro --pull` finds the
entry, cannot restore it, and runs the stage again. This pushes the entries,
then every object they name that the remote lacks.
"""

import argparse
from pathlib import Path

from dvc.repo import Repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("-r", "--remote", help="default: the project's default remote")
    args = parser.parse_args()
    with Repo() as repo:
        repo.push(run_cache=True, remote=args.remote)
        runs = Path(repo.cache.legacy.path) / "runs"
        entries = [(p.parent.name, p.name) for p in sorted(runs.glob("*/*/*"))]
        pushed = 0
        for odb, objs in repo.stage_cache.get_used_objs(entries).items():
            pushed += len(repo.cloud.push(objs, remote=args.remote, odb=odb).transferred)
        print(f"{len(entries)} run-cache entries; {pushed} of their files pushed that the remote lacked")


if __name__ == "__main__":
    main()
