"""Reading strace's output on its own: lines as `strace -f -y` writes them, the accesses they make."""

import os

from dvc_check.strace import Access, accesses, split_args


def test_split_args_keeps_commas_in_quotes_brackets_and_fd_paths():
    text = 'AT_FDCWD</a,b>, "x,\\"y", {st_mode=S_IFREG|0644, st_size=1}, 0'
    assert split_args(text) == ["AT_FDCWD</a,b>", '"x,\\"y"', "{st_mode=S_IFREG|0644, st_size=1}", "0"]
    assert split_args(text, most=2) == ["AT_FDCWD</a,b>", '"x,\\"y"']
    assert split_args('"cut short, as -s leaves it') == ['"cut short, as -s leaves it']


def test_each_kind_of_call_gives_its_access(tmp_path):
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "sub", tmp_path / "link")
    box = str(tmp_path)
    trace = "\n".join([
        f'1 openat(AT_FDCWD<{box}>, "out.txt", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0666) = 3<{box}/out.txt>',
        f'1 newfstatat(3<{box}/out.txt>, "", {{st_mode=S_IFREG|0644, st_size=0, ...}}, AT_EMPTY_PATH) = 0',
        f'1 newfstatat(AT_FDCWD<{box}>, "link/a, b.txt", 0x7ffc, 0) = -1 ENOENT (No such file or directory)',
        f'1 renameat2(AT_FDCWD<{box}>, "tmp", AT_FDCWD<{box}>, "sub/final", RENAME_NOREPLACE) = 0',
        f'1 renameat(AT_FDCWD<{box}>, "a", 3<{box}/sub>, "b") = 0',
        f'1 openat2(AT_FDCWD<{box}>, "log", {{flags=O_WRONLY|O_CREAT, mode=0644, resolve=0}}, 24) = 4',
        f'1 openat2(AT_FDCWD<{box}>, "in", {{flags=O_RDONLY, resolve=0}}, 24) = 4',
        '1 chdir("sub") = 0',
        '1 unlink("old") = 0',
        '1 connect(4, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("203.0.113.1")}, 16) = -1',
    ])  # fmt: skip
    assert accesses(trace, box) == [
        Access("write", f"{box}/out.txt", True),  # the fd-only fstat after it is no access
        Access("read", f"{box}/sub/a, b.txt", False),  # through the symlink, the comma kept
        Access("delete", f"{box}/tmp", True),
        Access("write", f"{box}/sub/final", True),  # the fourth argument, before the flags
        Access("delete", f"{box}/a", True),
        Access("write", f"{box}/sub/b", True),
        Access("write", f"{box}/log", True),  # openat2's flags are in its third argument
        Access("read", f"{box}/in", True),
        Access("delete", f"{box}/sub/old", True),  # after chdir
        Access("connect", "203.0.113.1:80", False),
    ]


def test_each_trace_resolves_symlinks_as_they_are_when_it_is_read(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    os.symlink(tmp_path / "a", tmp_path / "link")
    trace = f'1 newfstatat(AT_FDCWD<{tmp_path}>, "link/x", 0x7ffc, 0) = 0'
    assert accesses(trace, str(tmp_path)) == [Access("read", f"{tmp_path}/a/x", True)]
    (tmp_path / "link").unlink()
    os.symlink(tmp_path / "b", tmp_path / "link")
    assert accesses(trace, str(tmp_path)) == [Access("read", f"{tmp_path}/b/x", True)]
