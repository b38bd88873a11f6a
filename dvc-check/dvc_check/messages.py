"""Every line dvc-check prints about a problem, and its notes, in one table.

The code prints from it (`say`), the tests match on it, and README.md's "Its lines" holds
each of them with its fields in capitals (tests/test_messages.py fails when they drift).
A problem is printed behind `invalid: ` on stderr; a note behind `note: ` on stdout.
"""

FIX_STALE = "(run dvc repro, then commit dvc.lock and the results)"
FIX_RERUN = "commit the results of a real dvc repro"

PROBLEMS = {
    # 1. Definitions
    "unparsable": "dvc.yaml does not parse: {error}",
    "missing_program": "{stage}: cmd runs {program}, which does not exist",
    "unreadable_params": "{stage}: its params file {file} cannot be read ({error})",
    "missing_param": "{stage}: declares param {key}, which {file} lacks",
    # 2. Stale results
    "lock_missing": "dvc.lock is missing " + FIX_STALE,
    "stale_upstream": "dvc.lock is stale: {stage} used {path} as it was before {writer} last wrote it "
    + FIX_STALE,
    "stale": "dvc.lock is stale: stage '{stage}' {changes} " + FIX_STALE,
    "status_failed": "dvc status failed: {error}",
    # 3. Each stage in a sandbox
    "no_strace": "strace is not installed: the sandbox run needs it (apt-get install strace)",
    "setup_failed": "small_run.setup failed in {folder}: {error}",
    "override_missing": "small_run.params: {file} does not exist",
    "dep_not_pulled": "{stage}: dep {path} is not in the workspace: dvc pull it, or make it in "
    "dvc-check.yaml's small_run.setup",
    "dep_missing": "{stage}: dep {path} does not exist (it is neither in git nor made by a stage)",
    "reads": "{stage} reads {path}, which is not in its deps: add it to its deps, or stop reading it",
    "reads_param": "{stage} reads param {key}, which is not in its params: add it to its params, "
    "or stop reading it",
    "writes": "{stage} writes {path}, which is not in its outs: add it to its outs, or stop writing it",
    "deletes": "{stage} deletes {path}, which is not in its outs: stop deleting it",
    "modifies": "{stage} modifies its dep {path}: write an out instead",
    "rewrites_stages": "{stage} rewrites the stages of {path}: a stage may not change the pipeline",
    "unread_dep": "{stage} declares dep {path}, which it never reads: remove it from its deps",
    "unwritten_out": "{stage} declares out {path}, which it never writes: remove it from its outs, "
    "or write it",
    "connects": "{stage} connects to {address}: a stage in the sandbox has no network; declare its "
    "inputs as deps, or give the small run a local source (dvc-check.yaml)",
    "reads_git": "{stage} reads the repository's .git: stop it (no stage may depend on git's state)",
    "writes_git": "{stage} writes into the repository's .git: stop it (no stage may depend on git's state)",
    "failed_in_sandbox": "{stage} failed in its sandbox: {error}",
    # 4. The real rerun
    "rerun_failed": "{stage} failed on rerun: {error}",
    "changed": "rerun changed what was committed: {stage} makes {path} otherwise ({how}), and the "
    "same on every rerun, here and from another folder: " + FIX_RERUN,
    "changed_beyond_wobble": "rerun changed what was committed: {stage} makes {path} otherwise "
    "({how}), more than it wobbles from run to run ({wobble}): " + FIX_RERUN,
    "given_other_inputs": "rerun changed what was committed: {stage} makes {path} otherwise ({how}) "
    "from other inputs than the committed ones, which DVC's cache lacks ({missing}): dvc pull them, "
    "or declare a tolerance for it (dvc-check.yaml reproduce.tolerance)",
    "lock_changed": "rerun changed what was committed: dvc.lock (its text, with every output the "
    "same): " + FIX_RERUN,
    "lock_stage_changed": "rerun changed dvc.lock's stage '{stage}' beyond what another machine "
    "explains (its deps, params or cmd): " + FIX_RERUN,
    "metric_off": "{file}: {key} is {new} on rerun but {old} committed, off by {off}, more than the "
    "tolerance {tolerance} (dvc-check.yaml reproduce.tolerance)",
    "metric_changed": "{file}: {key} is {new} on rerun but {old} committed",
    # 5. Thresholds
    "bad_base": "--base {base} is not a revision of this repository",
    "no_number": "{file}: has no number {key}",
    "below": "{file}: {key} = {value} is below the minimum {min} (dvc-check.yaml)",
    "above": "{file}: {key} = {value} is above the maximum {max} (dvc-check.yaml)",
    "dropped": "{file}: {key} dropped from {old} on {base} to {new}, more than max_drop {max_drop} "
    "(dvc-check.yaml)",
}

NOTES = {
    "no_netns": "no network namespace here (unshare failed): network use is seen, not blocked",
    "wobbles_in_sandbox": "{stage} gives other outputs on each run with the same inputs; undeclared "
    "param reads are checked by its exit status and the outputs that hold still ({steady})",
    "rewrote_dvcfile": "{stage} rewrote {path} and left its stages as they were ({what}), as dvclive does",
    "wobbles": "{stage} gives other outputs on each run with the same inputs: {path} ({wobble}); "
    "the committed one is compared by value, within {tolerance}",
    "follows_path": "{stage} writes the repository's path into {path} ({wobble}); the committed one "
    "is compared by value, within {tolerance}",
    "not_compared": "{stage}'s {path} differs from run to run ({why}): not compared; what the "
    "stages downstream make of it is",
}


def say(name: str, **fields: object) -> str:
    """The line `name` of PROBLEMS or NOTES with its fields filled in."""
    return (PROBLEMS.get(name) or NOTES[name]).format(**fields)
