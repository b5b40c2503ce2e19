"""One way to store bytes so that a reader sees all of them or none (local folders and object stores)."""

import os
import uuid

import fsspec


def is_local_fs(fs) -> bool:
    """True when the fsspec filesystem ``fs`` is the local disk (protocol ``file`` / ``local``)."""
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def write_bytes_atomic(path: str, data: bytes, storage_options: dict | None = None, fs=None) -> None:
    """Store ``data`` at ``path`` (local path, ``file://`` or any fsspec URL such as ``s3://b/k``; a
    path of ``fs`` when an fsspec filesystem is given), replacing what was there, so that a concurrent
    reader sees the old bytes or the new ones, never half.

    Local: written to ``.<name>.tmp-<uuid>`` in the same folder, then ``os.replace`` (an atomic rename on
    POSIX and Windows); the temporary file is removed if the write fails. Object stores: one ``pipe``
    (an object becomes visible only once its upload completes). Parent folders are created.

    Raises:
        OSError: the folder cannot be created or written (permissions, full disk, storage fault).
    """
    if fs is None:
        fs, path = fsspec.core.url_to_fs(path, **(storage_options or {}))
    if not is_local_fs(fs):
        fs.pipe_file(path, data)
        return
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    tmp = os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
