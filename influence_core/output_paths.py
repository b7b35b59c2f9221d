"""Where results may be written: never over an input, and only where writing will work.

Checked *before* a computation, so a run that cannot save its output says so at once instead of
after minutes of training, and an output that names an input (the same file, a symlink to it, the
same file by another relative path, or a file inside an input image folder) is refused: no input
file is ever overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from influence_core.errors import InputError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # also hard links
    except OSError:
        return False


def check_output_path(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> Path:
    """The output path, resolved, once it is known not to be an input and to be writable; else an
    :class:`InputError` that says what to change. Creates nothing."""
    given = Path(out).expanduser()
    target = given.resolve()  # follows symlinks, makes relative paths absolute
    for source in inputs:
        src = Path(source).expanduser()
        src_resolved = src.resolve()
        if target == src_resolved or _same_file(given, src):
            raise InputError(f"--out {given} is the input {src}: writing there would overwrite your data; give another output file")
        if src_resolved.is_dir() and src_resolved in target.parents:
            raise InputError(
                f"--out {given} is inside the input folder {src}: writing there would change your data; give an output path outside it"
            )
    if target.is_dir():
        raise InputError(f"--out {given} is a folder; give a file path, e.g. {given / 'scores.csv'}")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise InputError(f"--out {given} exists and cannot be written (permissions); give another output file")
        return target
    folder = target.parent
    while not folder.exists():  # the nearest folder that exists must let us create the rest
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"--out {given}: {folder} is a file, not a folder, so {target.parent} cannot be created; give another output path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"--out {given}: the folder {folder} cannot be written (permissions); give an output path in a folder you can write to"
        )
    return target
