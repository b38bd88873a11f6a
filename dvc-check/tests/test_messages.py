"""README.md's "Its lines" holds every line dvc-check can print (dvc_check/messages.py), each
with its fields in capitals, and no line the code no longer prints."""

import re
from pathlib import Path

from dvc_check.messages import NOTES, PROBLEMS

README = Path(__file__).resolve().parents[1] / "README.md"


def as_documented(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), template)


def documented() -> list[str]:
    section = README.read_text().split("## Its lines", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```text\n(.*?)```", section, re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_every_line_the_code_prints_is_in_the_readme_and_no_other():
    code = [f"invalid: {as_documented(t)}" for t in PROBLEMS.values()]
    code += [f"note: {as_documented(t)}" for t in NOTES.values()]
    readme = documented()
    assert [x for x in code if x not in readme] == [], "missing from README.md's Its lines"
    assert [x for x in readme if x not in code] == [], "in README.md's Its lines, but not printed"
