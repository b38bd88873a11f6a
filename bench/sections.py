"""BENCHMARKS.md is one page with a section per benchmark script; each script
rewrites only its own section, between markers that name it."""

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(script: str, markdown: str) -> None:
    """Replace the section `script` wrote last time, or add it at the end of the page."""
    start, end = f"<!-- begin {script} -->", f"<!-- end {script} -->"
    block = f"{start}\n{markdown.strip()}\n{end}\n"
    page = PAGE.read_text() if PAGE.exists() else "# Benchmarks\n\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end) + "\n?", re.S)
    page = pattern.sub(lambda _: block, page) if pattern.search(page) else page.rstrip("\n") + "\n\n" + block
    PAGE.write_text(page)
