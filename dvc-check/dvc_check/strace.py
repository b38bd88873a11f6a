"""What a process tree did to files and the network, read from `strace -f -y` output.

strace sees system calls, so it sees every route: child processes, native code,
threads, any working directory. Each call that names a path becomes one Access;
paths are made absolute with the caller's working directory at that moment
(strace -y prints it for the *at calls; chdir and fork are followed for the rest).
"""

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

# The system calls to ask strace for, and what each does to the path it names.
TRACE = "%file,chdir,fchdir,%process,connect,sendto"
DELETES = {"unlink", "unlinkat", "rmdir"}
WRITES = {
    "mkdir",
    "mkdirat",
    "creat",
    "truncate",
    "symlink",
    "symlinkat",
    "link",
    "linkat",
    "mknod",
    "mknodat",
}
RENAMES = {"rename", "renameat", "renameat2"}
OPENS = {"open", "openat", "openat2", "creat"}
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND")
# Calls whose first argument is a directory fd (or AT_FDCWD) and whose second is the path.
AT_CALLS = {
    "openat", "openat2", "newfstatat", "fstatat64", "statx", "faccessat", "faccessat2", "readlinkat",
    "unlinkat", "mkdirat", "mknodat", "utimensat", "fchmodat", "fchownat", "execveat", "name_to_handle_at",
}  # fmt: skip

# How many arguments of each call are read below (a stat's struct, the third, is not): the rest
# of the line need not be split.
ARGS_READ = {"openat": 3, "openat2": 3, "renameat": 4, "renameat2": 4}
LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(?:<(.*?)>)?(?:\s+(E\w+))?")
FD_PATH = re.compile(r"^(?:AT_FDCWD|-?\d+)<(.*)>$")


@dataclass(frozen=True)
class Access:
    kind: str  # read | write | delete | connect
    path: str  # absolute path, or the address for connect
    ok: bool  # False when the call failed (a file that was not there)


# One token of a call's arguments: a quoted string (escapes kept, the closing quote optional as in
# a truncated line), an opening or closing bracket, a comma, or a run of anything else.
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[(\[{<]|[)\]}>]|,|[^"(\[{<)\]}>,]+', re.S)


def split_args(text: str, most: int | None = None) -> list[str]:
    """Top-level, comma-separated arguments of one call, quotes and brackets respected; only
    the first `most`, when given."""
    args, depth, start = [], 0, 0
    for token in TOKEN.finditer(text):
        c = token.group()
        if c in "([{<":
            depth += 1
        elif c in ")]}>":
            depth -= 1
        elif c == "," and depth == 0:
            args.append(text[start : token.start()].strip())
            if len(args) == most:
                return args
            start = token.end()
    args.append(text[start:].strip())
    return args


def unquote(arg: str) -> str | None:
    """The string of a quoted path argument, C escapes undone; None for anything else."""
    if not (arg.startswith('"') and '"' in arg[1:]):
        return None
    body = arg[1 : arg.rindex('"')]
    return (
        body.encode("latin-1", "backslashreplace")
        .decode("unicode_escape")
        .encode("latin-1")
        .decode("utf-8", "surrogateescape")
    )


def merge_unfinished(lines: list[str]) -> list[str]:
    """Join `<unfinished ...>` calls with their `<... resumed>` ends (threads interleave)."""
    pending: dict[str, str] = {}
    whole = []
    for line in lines:
        pid, _, rest = line.partition(" ")
        if rest.endswith("<unfinished ...>"):
            pending[pid] = line[: -len("<unfinished ...>")].rstrip()
        elif "<... " in rest and " resumed>" in rest:
            tail = rest.split(" resumed>", 1)[1]
            whole.append(pending.pop(pid, pid + " ?(") + tail)
        else:
            whole.append(line)
    return whole


def accesses(text: str, start_cwd: str) -> list[Access]:
    """Every path a traced process tree touched, and every address it connected to."""
    cwd: dict[str, str] = {}
    found: list[Access] = []
    # A trace names the same paths thousands of times (Python's imports, realpath's own lstats),
    # and the files do not change while it is read: each is resolved once.
    real = functools.lru_cache(maxsize=None)(os.path.realpath)
    for line in merge_unfinished(text.splitlines()):
        m = LINE.match(line)
        if not m:
            continue
        pid, call, raw, ret, ret_path, error = m.groups()
        args = split_args(raw, ARGS_READ.get(call, 2))
        here = cwd.setdefault(pid, start_cwd)
        ok = error is None and ret != "-1"
        if call in ("clone", "clone3", "fork", "vfork") and ok and ret.isdigit():
            cwd[ret] = here
            continue
        if call == "chdir" and ok:
            path = unquote(args[0])
            cwd[pid] = os.path.normpath(os.path.join(here, path)) if path else here
            continue
        if call == "fchdir" and ok:
            dirfd = FD_PATH.match(args[0])
            cwd[pid] = dirfd.group(1) if dirfd else here
            continue
        if call in ("connect", "sendto"):
            address = socket_address(raw)
            if address:
                found.append(Access("connect", address, ok))
            continue
        found += file_accesses(call, args, here, ok, cwd, pid, ret_path if call in OPENS else None, real)
    return found


PROC_SELF = re.compile(r"^/proc/(?:self|thread-self|\d+)/(root|cwd)(?=/|$)")


def resolve(dirfd: str | None, path: str, here: str, real: Callable[[str], str] = os.path.realpath) -> str:
    """The path as the kernel would find it: aliases (`//x`, /proc/self/root, /proc/self/cwd,
    symlinks) made into the one absolute path they name."""
    if not os.path.isabs(path):
        base = here
        if dirfd:
            m = FD_PATH.match(dirfd)
            if m:
                base = m.group(1)
        path = os.path.join(base, path)
    path = "/" + path.lstrip("/")
    path = PROC_SELF.sub(lambda m: "" if m.group(1) == "root" else here, path) or "/"
    return real(path)


def file_accesses(
    call: str,
    args: list[str],
    here: str,
    ok: bool,
    cwd: dict,
    pid: str,
    opened: str | None,
    real: Callable[[str], str],
) -> list[Access]:
    if call in RENAMES:
        if call == "rename":
            src, dst = (unquote(args[0]), None), (unquote(args[1]), None)
        else:
            src, dst = (unquote(args[1]), args[0]), (unquote(args[3]), args[2])
        out = []
        if src[0] is not None:
            out.append(Access("delete", resolve(src[1], src[0], here, real), ok))
        if dst[0] is not None:
            out.append(Access("write", resolve(dst[1], dst[0], here, real), ok))
        return out
    at = call in AT_CALLS
    if at and len(args) >= 2:
        dirfd, path = args[0], unquote(args[1])
        if dirfd.startswith("AT_FDCWD<"):  # strace -y shows the caller's working directory
            cwd[pid] = FD_PATH.match(dirfd).group(1) if FD_PATH.match(dirfd) else here
    else:
        dirfd, path = None, unquote(args[0]) if args else None
    if not path:  # "" with AT_EMPTY_PATH: a call on an open fd
        return []
    full = opened if ok and opened and opened.startswith("/") else resolve(dirfd, path, here, real)
    if call in DELETES:
        kind = "delete"
    elif call in WRITES:
        kind = "write"
    elif call in OPENS:
        flags = args[2] if call in ("openat", "openat2") else (args[1] if call == "open" else "O_CREAT")
        kind = "write" if any(f in flags for f in WRITE_FLAGS) else "read"
    else:  # stat, access, readlink, execve, ...: looking at a path is reading it
        kind = "read"
    return [Access(kind, full, ok)]


def socket_address(raw: str) -> str | None:
    """`HOST:PORT` of an AF_INET or AF_INET6 address in a connect/sendto call, else None."""
    family = re.search(r"sa_family=(AF_INET6?)", raw)
    if not family:
        return None
    port = re.search(r"sin6?_port=htons\((\d+)\)", raw)
    host = re.search(r'inet_(?:addr|pton)\((?:AF_INET6?, )?"([^"]+)"', raw)
    if not host:
        return None
    return f"{host.group(1)}:{port.group(1) if port else '?'}"


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0]
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1", "0.0.0.0", "::")
