"""Which undeclared params a stage reads: the fewest keys (whole sections where it cannot tell
keys apart) without which it behaves otherwise than with the whole params files."""

from dvc_check.paramsfile import leaves


def narrow(full: dict, declared: dict, enough) -> list[str]:
    """The fewest undeclared keys (whole sections where it can't tell keys apart) that make the
    stage behave as it does with the whole params files. `enough(extra)` reruns it."""
    groups: dict[tuple[str, str], list[str]] = {}
    for file, values in full.items():
        for key in leaves(values):
            if not any(key == d or key.startswith(d + ".") for d in declared[file]):
                groups.setdefault((file, key.split(".")[0]), []).append(key)

    def extra(keys: set[tuple[str, str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for file, key in keys:
            out.setdefault(file, []).append(key)
        return out

    needed = {(f, k) for (f, _), keys in groups.items() for k in keys}
    without: dict[tuple[str, str], set] = {}  # each section found needed: the keys its rerun had
    for (file, section), keys in groups.items():
        trial = needed - {(file, k) for k in keys}
        if enough(extra(trial)):
            needed = trial
        else:
            without[(file, section)] = trial
    budget = [16]

    def drops(file: str, keys: list[str]) -> bool:
        """Whether the stage still behaves as with the whole files without these keys (a rerun)."""
        nonlocal needed
        budget[0] -= 1
        trial = needed - {(file, k) for k in keys}
        if enough(extra(trial)):
            needed = trial
            return True
        return False

    def shrink(file: str, keys: list[str], known: bool) -> None:
        """Halve the keys the stage still gets from a section; where it needs both halves, stop:
        name the whole. `known`: a rerun showed that without all of `keys`, the other keys
        as they are now, it behaves otherwise."""
        if len(keys) <= 1 or budget[0] <= 0:
            return
        first, second = keys[: len(keys) // 2], keys[len(keys) // 2 :]
        if drops(file, first):
            if known or not drops(file, second):  # known: that rerun, without both, was made
                shrink(file, second, known=True)
        elif drops(file, second):
            shrink(file, first, known)

    for (file, section), keys in groups.items():
        if (file, section) in without:
            shrink(file, keys, known=needed - {(file, k) for k in keys} == without[(file, section)])
    named = []
    for (file, section), keys in groups.items():
        kept = [k for k in keys if (file, k) in needed]
        prefix = "" if file == "params.yaml" else f"{file}:"
        if kept and len(kept) == len(keys) and len(keys) > 1:
            named.append(prefix + section)
        else:
            named += [prefix + k for k in kept]
    return named
