"""One ``adunet reproduce`` per run folder at a time, on a shared machine or file system.

The lock is a file, ``<run_dir>/.adunet.lock``, created exclusively (``O_EXCL``) and holding who
took it: host, process id, that process's start time and the command. A second run on the same
folder is refused with one line naming the holder. A lock whose holder is gone (killed, machine
rebooted) is stale: on the same host that is decided from the process table (a reused process id
has another start time), and the stale lock is taken over with a note. A lock from another host is
never guessed stale; the message says which file to remove once that run is known to be gone.

A unit of the series (``adunet run``) takes no run lock, so that several run side by side, but it
holds one lock per piece of work it does in the run folder — ``.unit-train_<model>.lock``,
``.unit-maps_<model>[_<k>of<n>].lock``, ``.unit-nnunet_<variant>_fold<k>.lock`` — with the same rules:
the same unit started twice (a job resubmitted while the first still runs) is refused with one line
naming the holder, and ``adunet reproduce`` refuses a run folder while any unit holds a piece of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from adunet_lib.errors import AdunetError
from adunet_lib.run_folder import RUN_LOCK as LOCK_NAME, UNIT_LOCK_PREFIX as UNIT_PREFIX


class RunLocked(AdunetError):
    """Another live process holds the run folder."""


def _start_time(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux), ``""`` where unknown, None when no such process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot
    except (OSError, IndexError):
        return ""


def _command() -> str:
    """This process's command line as typed: the program's name (``python -m <package>`` for a
    package's ``__main__``), not its path, and every argument — a unit's names its model, shard or fold."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = f"python -m {program.parent.name}" if program.name == "__main__.py" else program.name
    return " ".join([name, *sys.argv[1:]])[:300]


def _holder() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid()) or "",
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": _command()}


def _alive(holder: dict[str, object]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot look into another machine's process table: assume it runs
    start = _start_time(int(holder.get("pid", -1)))
    return start is not None and (not start or not holder.get("start") or start == holder["start"])


def unit_lock_path(run_dir: str | Path, piece: str) -> Path:
    return Path(run_dir) / f"{UNIT_PREFIX}{piece}.lock"


def _read_holder(path: Path) -> dict[str, object]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def live_units(run_dir: str | Path) -> list[tuple[str, dict[str, object]]]:
    """The pieces of ``run_dir`` that a live ``adunet run`` holds, with their holders."""
    found = []
    for path in sorted(Path(run_dir).glob(f"{UNIT_PREFIX}*.lock")):
        holder = _read_holder(path)
        if holder and _alive(holder):
            found.append((path.name[len(UNIT_PREFIX):-len(".lock")], holder))
    return found


@contextlib.contextmanager
def run_lock(run_dir: str | Path, log: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the duration of the block (see the module docstring); refused while
    a unit (``adunet run``) holds a piece of the folder.

    Raises:
        RunLocked: one line naming the holder and the lock file.
    """
    with _exclusive(Path(run_dir) / LOCK_NAME, run_dir, log) as path:
        busy = live_units(run_dir)
        if busy:
            piece, holder = busy[0]
            more = f" (and {len(busy) - 1} more)" if len(busy) > 1 else ""
            raise RunLocked(f"{run_dir} is in use by a unit: {piece}{more} ({holder.get('command', 'adunet run')}, "
                            f"process {holder.get('pid')} since {holder.get('since')}); run adunet reproduce after "
                            f"the units, or remove {unit_lock_path(run_dir, piece)} if that unit is gone")
        yield path


@contextlib.contextmanager
def unit_lock(run_dir: str | Path, pieces: list[str], log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the lock of each piece of work a unit does (see the module docstring), all or none.

    Raises:
        RunLocked: a live process holds one of them; one line naming the piece, the holder and the file.
    """
    with contextlib.ExitStack() as stack:
        for piece in pieces:
            stack.enter_context(_exclusive(unit_lock_path(run_dir, piece), run_dir, log, piece))
        yield


@contextlib.contextmanager
def _exclusive(path: Path, run_dir: str | Path, log: Callable[[str], None], piece: str | None = None) -> Iterator[Path]:
    """Create ``path`` exclusively with this process as its holder for the block; a stale one is taken
    over with a note. ``piece``: the unit's piece of work the file guards (None: the run lock)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise AdunetError(f"{run_dir}: cannot create the run folder ({exc.strerror})") from None
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except PermissionError as exc:
            raise AdunetError(f"{run_dir}: the run folder is not writable ({exc.strerror}); give a run_dir you can "
                              f"write to, or ask its owner") from None
        except FileExistsError:
            holder = _read_holder(path)
            if holder and _alive(holder):
                where = f"on {holder.get('host')} " if holder.get("host") != socket.gethostname() else ""
                who = (f"({holder.get('command', 'adunet')}, process {holder.get('pid')} {where}since "
                       f"{holder.get('since')})")
                if piece is not None:
                    raise RunLocked(f"{run_dir}: {piece} is already being run by another unit {who}; wait for it "
                                    f"to finish, or remove {path} if that unit is gone") from None
                raise RunLocked(f"{run_dir} is in use by another run {who}; wait for it to finish, or "
                                f"remove {path} if that run is gone") from None
            if not holder and time.time() - path.stat().st_mtime < 5:
                time.sleep(1)  # being written by a run starting this instant: look again
                continue
            log(f"note: {path}: removing a stale lock (process {holder.get('pid', '?')} of "
                f"{holder.get('since', '?')} is gone)")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(_holder(), fh)
        break
    else:
        what = "the lock" if piece is not None else "the run lock"
        raise RunLocked(f"{run_dir}: could not take {what} {path}; remove it if no run is active")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def refuse_if_locked(run_dir: str | Path) -> None:
    """For a unit of the series (``adunet run``), which takes no run lock: refuse while an
    ``adunet reproduce`` holds ``run_dir`` (it would write the same files)."""
    holder = _read_holder(Path(run_dir) / LOCK_NAME)
    if holder and _alive(holder):
        raise RunLocked(f"{run_dir} is in use by {holder.get('command', 'adunet reproduce')} (process "
                        f"{holder.get('pid')} since {holder.get('since')}); run units before or after it, not during")
