"""File writing that never leaves half a file under a final name.

Every model, report and cache goes through :func:`atomic_path`: write to a
temporary name in the same folder, then ``os.replace`` it into place. A crash,
a kill or a full disk leaves the previous file untouched; only a hidden
``.tmp-*`` file may remain, which every reader ignores. Write errors become a
:class:`WriteError` that names the file and reads as one line.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from fer_keras.errors import FerError, WriteError


@contextlib.contextmanager
def atomic_path(final_path, *, overwrite=True):
    """Yield a temporary path next to ``final_path``; move it into place on success.

    ``overwrite=False`` never replaces a file that exists when the move happens
    (even one another process created meanwhile): :class:`FileExistsError`.
    Any other OS error (disk full, read-only folder ...) becomes a
    :class:`WriteError` naming ``final_path``; the temporary file is removed
    and whatever was at ``final_path`` is untouched.
    """
    final_path = Path(final_path)
    tmp = None
    try:
        # End with the real file name: Keras picks the format from the suffix(es).
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{final_path.name}", dir=final_path.parent)
        os.close(fd)
        yield Path(tmp)
        give_usual_permissions(tmp)
        _move_into_place(tmp, final_path, overwrite)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, (FileExistsError, WriteError)):
            raise WriteError(final_path, exc) from exc
        raise


_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
"""What os.link fails with where a file system cannot make hard links."""


def _move_into_place(tmp, final_path, overwrite):
    if overwrite:
        os.replace(tmp, final_path)
        return
    try:
        os.link(tmp, final_path)  # fails if final_path exists: no window for a race
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "File exists", str(final_path)) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # a file system without hard links: check, then move (a tiny window for a race remains)
        if os.path.lexists(final_path):
            raise FileExistsError(errno.EEXIST, "File exists", str(final_path)) from None
        os.replace(tmp, final_path)
        return
    with contextlib.suppress(OSError):  # the file is in place; a leftover hidden name is harmless
        os.unlink(tmp)


def give_usual_permissions(path):
    """Give a file made by ``mkstemp`` (0600) the permissions ``open()`` would have: 0666 less the umask,
    so that what fer_keras writes is as readable to other users and servers as any file the user makes."""
    os.chmod(path, 0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_json_atomic(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def file_sha256(path):
    """The sha256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def not_a_folder(path):
    """Why ``path`` (no folder) cannot be read as one: ``"x.jpg: is a file, not a folder"`` or
    ``"x: no such folder"`` (the second alone misleads a user who gave a file that exists)."""
    return f"{path}: is a file, not a folder" if Path(path).exists() else f"{path}: no such folder"


def natural_key(path):
    """Sort key that puts ``model_2`` before ``model_10``."""
    name = Path(path).name
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def next_model_path(models_dir, suffix=".h5"):
    """``models_dir/model_<i><suffix>``, ``i`` one above the highest index there (1 in an empty folder).

    Indices of both ``.h5`` and ``.keras`` files count, so a new member never
    shadows an existing one of the other format. Never a gap's index: a
    retired member's name still stands for it in other files (a distilled
    member's list of teachers, a temperatures.json), and a new file under it
    would be taken for the old one.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    used = set()
    for file in models_dir.iterdir():
        match = re.fullmatch(r"model_(\d+)\.(h5|keras)", file.name)
        if match:
            used.add(int(match.group(1)))
    return models_dir / f"model_{max(used, default=0) + 1}{suffix}"


def prepare_output_dir(path, *, overwrite=False, names=("report.json",), inputs=()):
    """Create ``path`` for a command that writes ``names`` into it.

    Refuses (see :func:`check_outputs`) before anything is created, so a
    refused run leaves no empty folder behind.
    """
    path = Path(path)
    check_outputs(path, names, overwrite=overwrite, inputs=inputs)
    check_writable_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FerError(f"cannot create output folder {path}: {exc.strerror}") from None
    return path


def check_writable_folder(path):
    """Raise :class:`FerError` unless ``path`` is a folder this process can write into, or can be made one.

    Creates nothing: a command checks where it will write before it reads
    its inputs, and must not leave an empty folder behind when it stops.
    """
    path = Path(path)
    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FerError(f"{existing} is a file; the output {path} must be a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FerError(f"cannot write into {existing}: permission denied")


def check_outputs(folder, names, *, overwrite=False, inputs=()):
    """Refuse to write ``names`` into ``folder`` where that would lose data.

    Why: a user's file can sit where a command writes (a ``predictions.csv``
    from predict.py, a hand-made ``weights.json``). Without ``overwrite``
    any of ``names`` that exists is refused, not just the command's marker
    file; with it only those names are replaced. A name that is one of the
    command's own ``inputs`` is refused even with ``overwrite``: the run
    would destroy what it reads.
    """
    folder = Path(folder)
    targets = [folder / name for name in names]
    refuse_inputs(targets, inputs)
    taken = [t for t in targets if os.path.lexists(t)]
    if taken and not overwrite:
        shown = ", ".join(str(t.relative_to(folder)) for t in taken[:5]) + (" ..." if len(taken) > 5 else "")
        raise FerError(f"{folder} already holds {shown}; pass overwrite=True to replace them or choose another "
                       "output folder", parameter="overwrite")


def refuse_inputs(targets, inputs):
    """Raise :class:`FerError` when one of ``targets`` is (resolves to) one of ``inputs``."""
    sources = {Path(i).resolve(): Path(i) for i in inputs if i}
    for target in targets:
        source = sources.get(Path(target).resolve())
        if source is not None:
            raise FerError(f"{target} is an input of this run ({source}); writing it would destroy it; "
                           "choose another output")


OUTPUTS_RECORD = ".fer_keras-outputs.json"
"""Hidden file in an output folder: the files each command wrote there last time."""


def record_outputs(folder, command, names, *, inputs=()):
    """Note that ``command`` wrote ``names`` into ``folder``; delete its stale files.

    Why: ``overwrite`` must not leave a file of the earlier run (a
    ``worst.png``) beside a new report, yet must never delete a file it did
    not create. So each command records what it wrote, and a rerun deletes
    only the files that record lists and this run did not write again.
    Records of other commands in the same folder are kept, and a stale file
    that is one of this run's ``inputs`` is kept too.
    """
    folder = Path(folder)
    record = read_outputs_record(folder)
    keep = {Path(i).resolve() for i in inputs if i}
    for stale in sorted(set(record.get(command, [])) - set(names)):
        path = folder / stale
        if path.is_file() and not path.is_symlink() and path.resolve() not in keep:
            with contextlib.suppress(OSError):
                path.unlink()
    record[command] = sorted(names)
    write_json_atomic(folder / OUTPUTS_RECORD, record)


def read_outputs_record(folder):
    """``{command: [relative file name, ...]}`` from ``folder``'s record; ``{}`` without a usable one.

    Names that would leave the folder (absolute, ``..``) are dropped: the
    record is a file anyone can edit, and it decides what gets deleted.
    """
    try:
        record = json.loads((Path(folder) / OUTPUTS_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    return {command: [n for n in names if isinstance(n, str) and _inside(n)]
            for command, names in record.items() if isinstance(names, list)}


def _inside(name):
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts
