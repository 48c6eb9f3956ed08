"""Safe output files: every file spidx writes goes through `atomic_path`; CLI commands call
`check_outputs` before any work.

Rules (see README "Safety"):

* An output that resolves to one of the command's inputs (same inode: the same path, a symlink or
  a hard link to it) is refused, so a typo never destroys an input.
* An existing output must be a regular file; a directory, FIFO, socket or device is refused, and so
  is a symbolic link (spidx never silently replaces a link with a regular file, and never writes
  through it to a file elsewhere; give the target path instead). ``-`` means stdout where a command
  supports it.
* The new content is written to a temp file beside the output, ``.NAME.<pid>.<random>.spidx-tmp``,
  fsynced, then renamed over the output (an interrupted write leaves the old file intact). A file
  that is replaced keeps its permission mode; a new file gets 0o666 minus the umask, like any file
  the shell creates. Temp files of killed runs (their pid no longer alive) are removed by the next
  write to the same output.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from contextlib import contextmanager

from .errors import InputError

STDOUT = "-"
TEMP_MARK = ".spidx-tmp"
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _nearest_existing(folder: str) -> str:
    while not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def check_output(path, inputs=()) -> None:
    """Refuse (InputError) an output path that cannot be written safely; see the module docstring."""
    path = os.fspath(path)
    if path == STDOUT:
        return
    if not path:
        raise InputError("empty output path")
    if os.path.lexists(path):
        for inp in inputs:
            if inp is None or inp == STDOUT:
                continue
            try:
                same = os.path.samefile(path, inp)
            except OSError:  # an input that does not exist (yet) or a dangling link
                same = False
            if same:
                raise InputError(f"{path}: output is the same file as the input {os.fspath(inp)}; "
                                 f"refusing to overwrite an input")
        if os.path.islink(path):
            raise InputError(f"{path}: output is a symbolic link; spidx does not replace links, "
                             f"give the target path ({os.path.realpath(path)}) instead")
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: output exists and is {_kind(mode)}, not a regular file; refusing to replace it")
    folder = _nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(folder):
        raise InputError(f"{path}: cannot create the output: {folder} is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write the output: directory {folder} is not writable")


def check_outputs(outputs, inputs=()) -> None:
    """`check_output` for every output (None entries are skipped); call it before any expensive work."""
    inputs = [os.fspath(i) for i in inputs if i is not None]
    outputs = [os.fspath(o) for o in outputs if o is not None]
    for out in outputs:
        check_output(out, inputs)
    real = [os.path.realpath(o) for o in outputs if o != STDOUT]
    if len(set(real)) != len(real):
        raise InputError("two outputs name the same file: " + ", ".join(outputs))


def _new_file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temps(path) -> list:
    """Remove temp files of `path` (``.NAME.<pid>.*.spidx-tmp*``) whose writing process is gone."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(r"\." + re.escape(os.path.basename(path)) + r"\.(\d+)\.[^.]+" + re.escape(TEMP_MARK))
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.remove(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed


@contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temp path beside `path`; on success it replaces `path`, on error it is removed.

    The output is checked first (`check_output`: no links, directories, FIFOs or devices); the
    replaced file's permission mode is kept, a new file follows the umask. `suffix` ends the temp
    name (np.savez appends '.npz' to names without it).
    """
    path = os.fspath(path)
    check_output(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temps(path)
        mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else _new_file_mode()
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.", suffix=TEMP_MARK + suffix,
                                   dir=folder)
    except OSError as e:
        raise InputError(f"{path}: cannot write the output ({e.strerror or type(e).__name__})") from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        check_output(path)  # nothing replaced the output with a link or a FIFO meanwhile
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
