"""lib.runtime.atomic_write: a replaced file is never missing or partial; failed writes leave no temporary file."""

import os

import fsspec
import pytest

from pricing_assets.lib.runtime.atomic_write import write_bytes_atomic


def test_replaces_existing_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "b" / "x.bin"
    write_bytes_atomic(str(target), b"old")
    write_bytes_atomic(str(target), b"new-bytes")
    assert target.read_bytes() == b"new-bytes"
    assert sorted(os.listdir(target.parent)) == ["x.bin"]


def test_failed_write_keeps_the_old_bytes_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    write_bytes_atomic(str(target), b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["x.bin"]


def test_object_store_path_is_written_in_one_put():
    fs = fsspec.filesystem("memory")
    write_bytes_atomic("memory://bucket/k/x.bin", b"payload")
    assert fs.cat_file("/bucket/k/x.bin") == b"payload"
