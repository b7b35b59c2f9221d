"""Which of the server's files the app may read, and where browser uploads go.

The app binds to localhost by default (``.streamlit/config.toml``), so whoever types a path is the
person at the machine and may name any file. When the server is opened to the network on purpose
(``--server.address 0.0.0.0``), a typed path is something a visitor asks the server to read: it
must lie under ``INFLUENCE_LAB_DATA_ROOT``, and without that variable typed paths are refused and
the visitor uploads the data instead. Uploads are saved by content under the cache
(``uploads/<sha256>/<name>``); a zipped image folder is extracted there safely (no absolute paths,
no ``..``, no links, a cap on the total size).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional

from influence_core.errors import InputError

DATA_ROOT_VARIABLE = "INFLUENCE_LAB_DATA_ROOT"
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")
MAX_UPLOAD_BYTES = 1 << 30  # 1 GiB extracted, all members of a zip together
MAX_ZIP_MEMBERS = 200_000


def upload_root() -> Path:
    """Where uploads are kept: ``INFLUENCE_LAB_UPLOADS``, else ``uploads`` beside the result cache."""
    from influence_core.cache import cache_root

    return Path(os.environ.get("INFLUENCE_LAB_UPLOADS", cache_root().parent / "uploads"))


def is_local_address(address: Optional[str]) -> bool:
    """Whether the server listens on this machine only (Streamlit's unset address means every interface)."""
    return bool(address) and str(address).strip().lower() in LOCAL_ADDRESSES


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_server_path(path: str | os.PathLike, server_address: Optional[str], data_root: Optional[str] = None) -> str:
    """``path`` if this server may read it, else an :class:`InputError` saying why and what to do.

    Allowed: anything when the server listens on localhost and no data root is set; otherwise only paths that
    resolve (symlinks followed) under the data root (``INFLUENCE_LAB_DATA_ROOT``) or under the upload folder."""
    root = data_root if data_root is not None else os.environ.get(DATA_ROOT_VARIABLE) or None
    if root is None and is_local_address(server_address):
        return str(path)
    resolved = Path(path).expanduser().resolve()
    if _inside(resolved, upload_root().resolve()):
        return str(path)
    if root is None:
        raise InputError(
            f"this server listens on {server_address or 'every network interface'}, so it reads no typed paths: "
            f"upload the file instead, or start it with {DATA_ROOT_VARIABLE} set to the folder its users may read"
        )
    root_path = Path(root).expanduser().resolve()
    if not _inside(resolved, root_path):
        raise InputError(
            f"{path} is outside the data folder this server may read ({root_path}, set by {DATA_ROOT_VARIABLE}); "
            "give a path inside it, or upload the file"
        )
    return str(path)


def _safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    if len(members) > MAX_ZIP_MEMBERS:
        raise InputError(f"the zip holds {len(members):,} entries; at most {MAX_ZIP_MEMBERS:,} are accepted")
    total = 0
    for m in members:
        name = PurePosixPath(m.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or (name.parts and ":" in name.parts[0]):
            raise InputError(f"the zip holds an unsafe path {m.filename!r} (absolute or with '..'); zip the folder itself")
        if stat.S_ISLNK(m.external_attr >> 16):
            raise InputError(f"the zip holds a link {m.filename!r}; zip the images themselves")
        total += m.file_size
    if total > MAX_UPLOAD_BYTES:
        raise InputError(f"the zip unpacks to {total / 2**20:,.0f} MiB; at most {MAX_UPLOAD_BYTES / 2**20:,.0f} MiB are accepted")
    return members


def _image_folder_in(folder: Path) -> Path:
    """The folder with the class subfolders: the extracted one, or its single top folder (a zipped ``mydata/``)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir():
        inner = [p for p in entries[0].iterdir() if p.is_dir() and not p.name.startswith(".")]
        if inner:
            return entries[0]
    return folder


def save_upload(name: str, data: bytes) -> str:
    """Keep an uploaded CSV or zipped image folder under :func:`upload_root` by its content's hash and return the
    path to use (the CSV, or the extracted folder). The same content is stored once; nothing is overwritten."""
    base = os.path.basename(name.replace("\\", "/")) or "upload"
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(f"{base} is {len(data) / 2**20:,.0f} MiB; at most {MAX_UPLOAD_BYTES / 2**20:,.0f} MiB are accepted")
    digest = hashlib.sha256(data).hexdigest()
    folder = upload_root() / digest
    is_zip = base.lower().endswith(".zip")
    target = folder / (base[:-4] if is_zip else base)
    if target.exists():
        return str(_image_folder_in(target) if is_zip else target)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{digest[:12]}-"))
    try:
        if is_zip:
            import io

            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    members = _safe_members(archive)
                    out = tmp / target.name
                    out.mkdir()
                    for m in members:
                        archive.extract(m, out)
            except zipfile.BadZipFile:
                raise InputError(f"{base} is not a readable zip file; zip the image folder (one subfolder per class) again") from None
        else:
            (tmp / target.name).write_bytes(data)
        try:
            tmp.rename(folder)
        except OSError:  # the same upload saved meanwhile by another session: keep that one
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(_image_folder_in(target) if is_zip else target)
