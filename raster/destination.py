"""Where an output file goes, and how it gets there without harming anything else.

Every file pansharp writes is built in a hidden temporary folder beside its destination
(same file system, so the last step is a rename) and moved into place only when it is
complete. This module holds the rules around that, shared by both COG writers
(:mod:`raster.cog`, :mod:`raster.fastcog`) and usable for any other output file:

- :func:`check_destination`, before any work: the name, the folder, ``--overwrite``, and
  that the output is none of the inputs (same inode, whatever the spelling: a symlink, a
  hard link, ``./x/../x.tif``; with ``--overwrite`` the input would be replaced while it
  is still being read).
- :func:`publish`, at the end: the rename onto the destination. Without ``--overwrite``
  it never replaces a file, even one that appeared after the early check (two runs to
  the same ``-o``): Linux ``renameat2(RENAME_NOREPLACE)``, else ``link`` + ``unlink``,
  else an exclusively created placeholder that only this run may replace.
- :class:`TempFolder`: the hidden folder. Its owner holds an ``flock`` on a marker file
  inside it for as long as it runs; the kernel drops that lock when the process dies,
  however it dies (SIGKILL, OOM killer, power loss of a network client), and a dead
  process's pid may be reused, its lock never comes back. So the next run into the same
  folder removes exactly the temporary folders that carry pansharp's marker and whose
  lock it can take (:func:`remove_stale`); anything else is never touched. A folder
  still being set up (not locked yet) is named after its creator (pid, start time,
  host); it is removed once that process is gone from this host (killed mid-setup).
- :func:`space_error`: a write that failed because the file system is full (or a quota
  is reached) becomes one :class:`errors.OutputError` naming the folder.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from errors import OptionError, OutputError, PansharpError

COG_SUFFIXES = (".tif", ".tiff")
OUTPUT_FLAG = "-o/--output"

LOCK_NAME = "pansharp.lock"  # inside each temporary folder, locked by its owner
MARKER = "pansharp temporary folder"  # the lock file's first line
_TMP = ".pansharp-tmp-"  # .OUTNAME.pansharp-tmp-XXXXXXXX: a complete, locked folder
_NEW = ".pansharp-new-"  # .OUTNAME.pansharp-new-PID-START-HOST-XXXXXXXX: being set up
_STALE_CANDIDATE = re.compile(r"^\..*\.pansharp-tmp-[a-z0-9_]+$")
_NEW_CANDIDATE = re.compile(r"^\..*\.pansharp-new-(\d+)-(\d+)-([0-9a-f]{8})-[a-z0-9_]+$")
_NAME_KEEP = 180  # characters of the output's name kept in the folder's (NAME_MAX is 255)

# Folders of this process: never swept, even where flock is per process (NFS emulates it
# with POSIX locks, which a second writer in the same process would not see as held).
_LIVE: set[str] = set()

_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
LOW_SPACE_BYTES = 1 << 20  # a GDAL write error with less than this free: a full disk

_AT_FDCWD = -100  # linux/fcntl.h
_RENAME_NOREPLACE = 1  # linux/fs.h
_NO_RENAMEAT2 = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV}


def folder_of(path: Path) -> Path:
    """The folder a relative or absolute file path lies in ("." for a bare name)."""
    return path.parent if str(path.parent) else Path(".")


# -- before any work ----------------------------------------------------------------------


def check_destination(
    dest: str | os.PathLike,
    overwrite: bool,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    suffixes: tuple[str, ...] | None = None,
    flag: str = OUTPUT_FLAG,
) -> Path:
    """Fail early (before any work) if ``dest`` cannot or must not be written.

    ``inputs``: every file the run reads (a VRT's sources are added); the output may be
    none of them, ``overwrite`` or not (exit 5). ``suffixes``: the names the format
    allows (``COG_SUFFIXES`` for a COG), else :class:`errors.OptionError` (exit 2).
    ``flag``: the option that names the file, for the messages.
    """
    path = Path(dest)
    if suffixes and path.suffix.lower() not in suffixes:
        what = "the output is a Cloud-Optimized GeoTIFF; " if suffixes == COG_SUFFIXES else ""
        raise OptionError(
            f"{flag} {path}: {what}give a file name ending in {' or '.join(suffixes)}"
        )
    same = next((p for p in input_files(inputs) if same_file(path, p)), None)
    if same is not None:
        what = "is the input" if _spelled_alike(path, same) else "is the same file as the input"
        raise OutputError(
            f"{flag} {path} {what} {same}; writing it would destroy the input while it is "
            f"read; choose another {flag}"
        )
    folder = folder_of(path)
    if path.is_dir():
        raise OutputError(f"output {path} is a folder; give a file name with {flag}")
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} exists; pass --overwrite to replace it")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} does not exist; create it or change {flag}")
    try:  # a real probe: os.access says yes to root even on read-only file systems
        prefix = f".{path.name[:_NAME_KEEP]}."
        fd, probe = tempfile.mkstemp(prefix=prefix, suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in _SPACE_ERRNOS:
            raise _space_message(exc.errno, folder, path, flag) from None
        raise OutputError(
            f"output folder {folder} is not writable ({exc.strerror}); change {flag}"
        ) from None
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name one file: same (st_dev, st_ino) after following links.
    False when either does not exist (a missing input is reported by the reader)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def input_files(inputs: Iterable[str | os.PathLike | None]) -> list[str]:
    """The inputs and, for a VRT, the files GDAL reads through it (``dataset.files``,
    which lists the sources): overwriting a VRT's source destroys the input as surely."""
    out: list[str] = []
    for item in inputs:
        if item is None:
            continue
        out.append(os.fspath(item))
        if not out[-1].lower().endswith(".vrt") or not os.path.isfile(out[-1]):
            continue
        try:
            import rasterio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. NotGeoreferencedWarning
                with rasterio.open(out[-1]) as ds:
                    out.extend(f for f in ds.files if f != out[-1])
        except Exception:  # unreadable: the scene reader reports it with its own message
            continue
    return out


def _spelled_alike(a: Path, b: str) -> bool:
    try:
        return os.path.abspath(a) == os.path.abspath(b)
    except ValueError:
        return False


# -- at the end: the rename -----------------------------------------------------------------


def publish(
    src: str | os.PathLike, dest: str | os.PathLike, overwrite: bool, *, flag: str = OUTPUT_FLAG
) -> Path:
    """Move the finished file ``src`` onto ``dest`` in one step (same file system).

    ``overwrite``: ``os.replace``. Otherwise a file at ``dest`` is never replaced, even
    one that appeared after :func:`check_destination` (another run to the same output):
    :class:`errors.OutputError` naming ``dest`` and ``--overwrite``. The file keeps its
    inode (the streaming writer's in-place assembly relies on it).
    """
    dest = Path(dest)
    try:
        if overwrite:
            os.replace(src, dest)
        else:
            _move_no_replace(os.fspath(src), os.fspath(dest))
    except FileExistsError:
        raise OutputError(
            f"output {dest} appeared while this run was writing it (another run?); it was "
            f"left as it is: pass --overwrite to replace it, or choose another {flag}"
        ) from None
    except IsADirectoryError:
        raise OutputError(f"output {dest} is now a folder; give a file name with {flag}") from None
    except OSError as exc:
        if exc.errno in _SPACE_ERRNOS:
            raise _space_message(exc.errno, folder_of(dest), dest, flag) from None
        raise OutputError(
            f"cannot move the finished output onto {dest} ({exc.strerror}); "
            f"check that folder or choose another {flag}"
        ) from None
    return dest


def _move_no_replace(src: str, dest: str) -> None:
    """Rename without replacing; FileExistsError when ``dest`` exists. Three ways, the
    first the file system supports: renameat2(RENAME_NOREPLACE) (Linux 3.15+, glibc
    2.28+; ext4, XFS, btrfs, tmpfs...); link + unlink (the link fails on an existing
    name; file systems with hard links); an O_EXCL placeholder at ``dest``, then replaced
    by the file (the placeholder is this run's own; another no-clobber run sees a file)."""
    rename2 = _renameat2()
    if rename2 is not None:
        a, b = os.fsencode(src), os.fsencode(dest)
        if rename2(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in _NO_RENAMEAT2:
            raise OSError(err, os.strerror(err), dest)
    try:
        os.link(src, dest, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    else:
        try:
            os.unlink(src)
        except OSError:
            pass  # the temporary folder goes anyway
        return
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # FileExistsError
    os.close(fd)
    os.replace(src, dest)


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """The C library's ``renameat2``, or None (not Linux, glibc older than 2.28)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


@contextmanager
def staged_file(
    dest: str | os.PathLike, overwrite: bool, *, flag: str = OUTPUT_FLAG
) -> Iterator[Path]:
    """A path to write ``dest``'s content to, published onto ``dest`` when the block ends
    without an error (:func:`publish`), removed otherwise. For any single-file output::

        with staged_file(out, overwrite=True, flag="--json") as tmp:
            tmp.write_text(report)
    """
    dest = Path(dest)
    with TempFolder(dest, flag) as folder:
        tmp = folder / dest.name[:_NAME_KEEP]
        yield tmp
        publish(tmp, dest, overwrite, flag=flag)


# -- the temporary folder -----------------------------------------------------------------


class TempFolder:
    """Context manager: a hidden, locked folder beside ``dest``; removed on exit.

    Entering first removes the stale temporary folders of dead runs in the same folder
    (:func:`remove_stale`). An error leaving the block because the disk is full becomes
    one :class:`errors.OutputError` naming the folder (:func:`space_error`), decided
    before the folder is removed (removing it frees the space that tells).
    """

    def __init__(self, dest: str | os.PathLike, flag: str = OUTPUT_FLAG) -> None:
        self.dest = Path(dest)
        self.folder = folder_of(self.dest)
        self.flag = flag
        self.path: Path | None = None
        self._lock_fd: int | None = None

    def __enter__(self) -> Path:
        remove_stale(self.folder)
        try:
            self.path, self._lock_fd = _create(self.dest)
        except OSError as exc:
            err = space_error(exc, self.folder, self.dest, self.flag)
            raise err or OutputError(
                f"cannot create a temporary folder in {self.folder} ({exc.strerror}); "
                f"check that folder or change {self.flag}"
            ) from None
        _LIVE.add(os.path.realpath(self.path))
        return self.path

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        err = space_error(exc, self.folder, self.dest, self.flag) if exc is not None else None
        self.remove()
        if err is not None:
            raise err from None

    def remove(self) -> None:
        """Delete the folder and release its lock (idempotent)."""
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            _LIVE.discard(os.path.realpath(self.path))
            self.path = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _create(dest: Path) -> tuple[Path, int]:
    """Make ``.NAME.pansharp-new-X``, lock and mark it, rename it ``.NAME.pansharp-tmp-X``.

    Only the complete, locked folder bears the name :func:`remove_stale` looks for, so a
    sweep can never take a folder whose owner has not locked it yet.
    """
    folder = folder_of(dest)
    stem = f".{dest.name[:_NAME_KEEP]}"
    pid = os.getpid()
    prefix = f"{stem}{_NEW}{pid}-{_start_time(pid) or 0}-{_host_hash()}-"
    for _ in range(100):
        new = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
        fd = -1
        try:
            fd = os.open(new / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            _lock(fd, blocking=False)
            os.write(fd, _owner_record(dest).encode())
            final = folder / (stem + _TMP + new.name[len(prefix) :])
            try:
                os.rename(new, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                os.close(fd)
                fd = -1
                shutil.rmtree(new, ignore_errors=True)
                continue  # that name is taken by another run's folder: draw again
            return final, fd
        except BaseException:
            if fd >= 0:
                os.close(fd)
            shutil.rmtree(new, ignore_errors=True)
            raise
    raise OSError(errno.EEXIST, "no free temporary folder name", str(folder))


def _host_hash() -> str:
    """Eight hex digits naming this host in a folder's name (a host name may be long or
    hold characters a file name should not)."""
    import hashlib

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _owner_record(dest: Path) -> str:
    """The lock file's text: the marker, then who owns the folder (for a person reading
    it, and as a second check against a lock lost on a network file system)."""
    pid = os.getpid()
    return (
        f"{MARKER}\npid {pid}\nstart {_start_time(pid)}\nhost {socket.gethostname()}\n"
        f"output {dest.name}\n"
    )


def _start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat, the process's start in clock ticks since boot: with
    the pid, it names one process (a reused pid has another start); "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces
    return fields[19] if len(fields) > 19 else ""


def _owner_alive(record: str) -> bool:
    """True when the recorded owner still runs on this host (same pid and start time)."""
    info = dict(line.split(" ", 1) for line in record.splitlines()[1:] if " " in line)
    try:
        pid = int(info.get("pid", ""))
    except ValueError:
        return False
    start = info.get("start", "")
    if info.get("host") != socket.gethostname() or not start:
        return False  # another machine's run: its lock is the only witness
    return _start_time(pid) == start


def _lock(fd: int, blocking: bool) -> bool:
    """Exclusive ``flock`` on ``fd``; False when another open file holds it."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def temp_folders(folder: str | os.PathLike) -> Iterator[Path]:
    """pansharp's temporary folders in ``folder``: the name pattern and, inside, a lock
    file whose first line is the marker (never anything else that lies there)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not _STALE_CANDIDATE.match(entry.name):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            with open(os.path.join(entry.path, LOCK_NAME), "rb") as f:
                if f.read(len(MARKER) + 1) != (MARKER + "\n").encode():
                    continue
        except OSError:
            continue
        yield Path(entry.path)


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary folders in ``folder`` whose run is gone; the removed paths.

    Gone: the lock file's flock can be taken (the kernel released it when the owner
    died) and, on this host, no process with the recorded pid and start time runs. A
    live run's folder (lock held), this process's own folders, and anything without
    pansharp's marker are left alone.
    """
    if sys.platform == "win32":  # no flock: never guess
        return []
    removed = _remove_abandoned_setups(folder)
    for path in temp_folders(folder):
        if os.path.realpath(path) in _LIVE:
            continue
        try:
            fd = os.open(path / LOCK_NAME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if not _lock(fd, blocking=False):
                continue  # its run is alive
            record = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            if not record.startswith(MARKER + "\n") or _owner_alive(record):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def _remove_abandoned_setups(folder: str | os.PathLike) -> list[Path]:
    """Remove the ``.pansharp-new-`` folders whose creator (pid and start time in the
    name) no longer runs on this host: it was killed between creating the folder and
    locking it. Another host's, or one whose creator runs, is left alone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    host = _host_hash()
    for entry in entries:
        m = _NEW_CANDIDATE.match(entry.name)
        if not m or m.group(3) != host:
            continue
        pid, start = int(m.group(1)), m.group(2)
        if start == "0" or _start_time(pid) == start or os.path.realpath(entry.path) in _LIVE:
            continue  # start unknown (no /proc): never guess; or its creator runs
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


# -- a full disk ----------------------------------------------------------------------------


def space_error(
    exc: BaseException | None, folder: Path, dest: Path, flag: str = OUTPUT_FLAG
) -> OutputError | None:
    """The one-line error for a write that failed for lack of space, else None.

    Recognised: an OSError with ENOSPC or EDQUOT anywhere in the exception's chain (the
    streaming writer's ``os.write``/``pwrite``/``copy_file_range``); a message holding
    that error's text (GDAL passes libtiff's ``strerror``); a GDAL (rasterio) error while
    the folder has less than ``LOW_SPACE_BYTES`` left (GDAL's write errors carry no
    errno: "TIFFAppendToStrip:Write error" is all it says). Deliberate errors and
    interruptions pass through unchanged.
    """
    if exc is None or not isinstance(exc, Exception) or isinstance(exc, PansharpError):
        return None
    gdal = False
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in _SPACE_ERRNOS:
            return _space_message(e.errno, folder, dest, flag)
        text = str(e)
        for code in _SPACE_ERRNOS:
            if os.strerror(code) in text:
                return _space_message(code, folder, dest, flag)
        gdal = gdal or type(e).__module__.startswith("rasterio")
    if gdal and _free_bytes(folder) < LOW_SPACE_BYTES:
        return _space_message(errno.ENOSPC, folder, dest, flag)
    return None


def _space_message(code: int, folder: Path, dest: Path, flag: str) -> OutputError:
    what = "out of space" if code == errno.ENOSPC else "over its disk quota"
    return OutputError(
        f"output folder {folder} is {what} ({os.strerror(code)}) while writing {dest.name}; "
        f"free space there or choose another {flag}; nothing was written"
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts (rasterio chains GDAL's error stack)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [x for x in (e.__cause__, e.__context__) if x is not None]


def _free_bytes(folder: Path) -> int:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return 1 << 62
    return st.f_bavail * st.f_frsize
