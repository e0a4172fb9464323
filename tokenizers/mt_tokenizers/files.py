"""How `mt` writes to disk without ever leaving half a file or destroying what a user made:
the one home of atomic files, atomic directories, the run lock and the disk-full error.

- `atomic_path(path)` / `write_atomic(path, data)`: a regular file is written beside itself
  under a temporary name, flushed and renamed over it, keeping an existing file's mode (new
  files get the usual 0666 & ~umask, whatever the writing library chose). A symlink to a
  regular file has its target replaced the same way. Character devices, FIFOs, sockets and
  `/dev/stdout`-style paths (`/dev/std*`, `/dev/fd/N`, `/proc/...`) are written through.
- `atomic_directory(out)`: a directory is built under a temporary name beside `out` and
  renamed into place when complete; with `replace`, an existing `out` is swapped out and
  deleted only after the new one is in place. The caller decides whether `out` may be
  replaced (`machine_translation.model.outputs`).
- `DirLock`: an OS-level lock (flock) on a file inside a directory, holding the owner's PID;
  the kernel releases it when the process dies, however it dies.
- `DiskFull`: what every writer here raises when the disk (or a file size limit) is full,
  naming the path the user gave, never a temporary file.

They live here, in the lowest package that needs them (the tokenizer package imports
nothing of ours), so the tokenizers and the application share one copy; the application
reaches them through `machine_translation.base.files`.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not locked there
    fcntl = None

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
# How libraries that wrap the OS error in their own exception word a full disk or a file size
# limit (safetensors: "Os { code: 28, ... }", torch.save: "...inline_container... file write failed").
DISK_FULL_WORDS = re.compile(r"No space left|File too large|Disk quota|code: (28|27|122)\b|os error (28|27|122)\b|"
                             r"file write failed|unexpected pos", re.IGNORECASE)
WRITE_THROUGH_PREFIXES = ("/dev/stdout", "/dev/stderr", "/dev/fd/", "/proc/")
PARTIAL_MARKER = ".mt-partial"  # inside a directory being built: its lock says whether the builder lives


class DiskFull(OSError):
    """The disk, a quota or a file size limit is full; `filename` is the path the user gave."""

    def __init__(self, path: str | Path):
        super().__init__(errno.ENOSPC, "No space left on device", str(path))


class Locked(OSError):
    """A directory is locked by another live process (`pid`)."""

    def __init__(self, path: str | Path, pid: int | None):
        super().__init__(errno.EBUSY, "in use by another process", str(path))
        self.pid = pid


def is_disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
        return True
    return not isinstance(e, (KeyboardInterrupt, SystemExit)) and bool(DISK_FULL_WORDS.search(str(e)))


def writes_through(path: Path) -> bool:
    """Whether `path` must be written in place: a device, FIFO or socket, or a `/dev/stdout`-style
    path (also behind a symlink), which a rename would replace by a regular file."""
    p = Path(path)
    for _ in range(40):  # follow the symlink chain, as the kernel would (at most 40 links)
        if str(p.absolute()).startswith(WRITE_THROUGH_PREFIXES):
            return True
        if not p.is_symlink():
            break
        p = p.parent / os.readlink(p)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _umask() -> int:
    """The process's umask (read from /proc where it says it, so the umask is never changed)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _default_mode() -> int:
    """0666 & ~umask: the mode `open()` gives a new file."""
    return 0o666 & ~_umask()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _named(e: BaseException, path: Path, *temporary: Path) -> BaseException:
    """The error to show the user: disk full as `DiskFull(path)`; an OS error naming one of
    our temporary files renamed to name `path`."""
    if is_disk_full(e):
        return DiskFull(path)
    if isinstance(e, OSError) and e.filename is not None and Path(e.filename) in temporary:
        return type(e)(e.errno, e.strerror, str(path))
    return e


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield the path to write the new content of `path` to (see the module's docstring).
    A failure (an exception, a full disk) leaves the old file untouched and no temporary file."""
    path = Path(path)
    if writes_through(path):
        try:
            yield path
        except BaseException as e:
            raise _named(e, path) from None
        return
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        yield tmp
        _fsync(tmp)
        try:
            st = os.stat(target)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        except FileNotFoundError:
            os.chmod(tmp, _default_mode())
        os.replace(tmp, target)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        raise _named(e, path, tmp) from None


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write a file so that a crash leaves either the old file or the new one, never half of one."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()


def write_json(path: Path, data) -> None:
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(path: Path, error: type[Exception], what: str = "file"):
    """Parse a JSON file; a missing, unreadable or corrupt one raises `error` with one line
    naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} missing: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what} is corrupt: {path} ({e})") from None
    except PermissionError:
        raise error(f"{what} is unreadable: {path} (permission denied)") from None
    except OSError as e:
        raise error(f"{what} is unreadable: {path} ({e.strerror})") from None


class DirLock:
    """An exclusive flock on `directory/name` (created if missing), whose content is the
    owner's PID. `acquire()` raises `Locked` naming that PID when a live process holds it;
    the kernel drops the lock when the holder dies, so kill -9 never leaves a stale lock."""

    def __init__(self, directory: str | Path, name: str):
        self.path = Path(directory) / name
        self._fd: int | None = None

    def acquire(self) -> DirLock:
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _default_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Locked(self.path.parent, self.owner()) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def owner(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def held_by_another(self) -> int | None:
        """The PID of a live process holding the lock, or None (checked without keeping it)."""
        if fcntl is None or self._fd is not None or not self.path.is_file():
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            return self.owner() or -1
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_abandoned(out: Path) -> None:
    """Delete the temporary directories an `atomic_directory(out)` left when its process died
    (each holds PARTIAL_MARKER, whose lock only a live builder holds)."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        return
    for leftover in parent.glob(f".{out.name}.partial-*"):
        marker = DirLock(leftover, PARTIAL_MARKER)
        if leftover.is_dir() and marker.path.is_file() and marker.held_by_another() is None:
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(out: str | Path, replace: bool = False) -> Iterator[Path]:
    """Yield a new, empty directory beside `out` to build in; when the block ends normally it
    becomes `out`. Without `replace`, `out` must be absent or empty; with it, an existing `out`
    is renamed aside, the new one renamed in, and the old one deleted last. A crash or an error
    at any point leaves `out` as it was; the partial directory is removed (or, after kill -9,
    by the next `atomic_directory` of the same `out`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    lock = DirLock(tmp, PARTIAL_MARKER)
    try:
        lock.acquire()
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's is 0700
        yield tmp
        lock.release()
        (tmp / PARTIAL_MARKER).unlink()
        _fsync(tmp)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if out.exists() and replace:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
            os.replace(out, old)  # (an empty directory is replaced by rename)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        elif out.exists():
            raise FileExistsError(errno.EEXIST, "appeared while it was being written: choose another", str(out))
        else:
            os.replace(tmp, out)
        _fsync(out.parent)
    except BaseException as e:
        lock.release()
        shutil.rmtree(tmp, ignore_errors=True)
        raise _named(e, out, tmp) from None
