"""How dvc-check says two versions of a file differ, and what it lets a wobbling file move."""

import io
import json
import tarfile

from PIL import Image

from dvc_check.differ import gap, how, values, within


def png(pixels: list[int]) -> bytes:
    image = Image.new("L", (2, 2))
    image.putdata(pixels)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_each_kind_of_file_is_said_by_what_it_holds():
    old, new = json.dumps({"a": {"b": [1.0, 2.0]}}), json.dumps({"a": {"b": [1.0, 2.5]}})
    assert how("m.json", old.encode(), new.encode()) == "numbers differ by up to 0.5 (relative 0.2) at a.b[1]"
    assert (
        how("t.csv", b"x,y\n1,2\n", b"x,y\n1,3\n")
        == "numbers differ by up to 1 (relative 0.333) at row 1, column y"
    )
    assert (
        how("t.tsv", b"x\ty\n1\tcat\n", b"x\ty\n1\tdog\n")
        == "the text differs at 1 place(s), first at row 1, column y"
    )
    assert how("i.png", png([0, 0, 0, 0]), png([0, 9, 0, 3])) == "2 of 4 pixels differ, by up to 9 levels"
    assert how("m.bin", b"\xff\x00ab", b"\xff\x00abc") == "its bytes differ: 4 committed, 5 now"
    assert how("r.md", b"# r\nacc 0.9\nat 10:00\n", b"# r\nacc 0.99\nat 10:01\n") == (
        "the text differs at 2 place(s), first at line 2"
    )
    assert (
        how("m.yaml", b"a: 1\n", b"a: 1\nb: 2\n")
        == "other places: 1 key(s), rows or columns only in one of them"
    )


def test_a_wobbling_file_may_move_ten_times_its_wobble_and_a_still_number_only_by_rounding():
    run1, run2 = b'{"loss": 0.30000000000000004, "acc": 0.9}', b'{"loss": 0.3, "acc": 0.9}'
    wobble = gap(values("m.json", run1), values("m.json", run2))
    assert within("m.json", b'{"loss": 0.3000000000000003, "acc": 0.9}', run2, wobble, {}) is None
    assert within("m.json", b'{"loss": 0.31, "acc": 0.9}', run2, wobble, {}) is not None
    assert within("m.json", b'{"loss": 0.3, "acc": 0.91}', run2, wobble, {}) is not None
    assert within("m.json", b'{"loss": 0.3, "acc": 0.91}', run2, wobble, {"acc": 0.02}) is None


def tar_gz(text: bytes, mtime: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        member = tarfile.TarInfo("metrics.json")
        member.size, member.mtime = len(text), mtime
        archive.addfile(member, io.BytesIO(text))
    return out.getvalue()


def test_an_archive_is_compared_by_what_its_members_hold_and_a_report_by_its_lines():
    run1, run2 = tar_gz(b'{"acc": 0.9}', mtime=1), tar_gz(b'{"acc": 0.9}', mtime=2)
    assert run1 != run2
    assert how("dist/m.tar.gz", run1, run2) == "the same values, written otherwise"
    wobble = gap(values("dist/m.tar.gz", run1), values("dist/m.tar.gz", run2))
    assert within("dist/m.tar.gz", tar_gz(b'{"acc": 0.9}', mtime=0), run2, wobble, {}) is None
    forged = tar_gz(b'{"acc": 0.99}', mtime=0)
    assert (
        within("dist/m.tar.gz", forged, run2, wobble, {})
        == "the text differs at 1 place(s), first at member metrics.json"
    )
    # A report with a time stamp: the line that moves between runs is excused, no other.
    run1, run2 = b"acc 0.9\nat 10:00\n", b"acc 0.9\nat 10:01\n"
    wobble = gap(values("r.md", run1), values("r.md", run2))
    assert within("r.md", b"acc 0.9\nat 09:00\n", run2, wobble, {}) is None
    assert within("r.md", b"acc 0.99\nat 09:00\n", run2, wobble, {}) is not None
