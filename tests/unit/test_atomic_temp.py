"""fsutil's temporary file (tempfile.mkstemp's behaviour, without importing tempfile): a new private
file next to the target, never an existing one, and nothing left behind by atomic_write."""

import os
import stat

from conftest import POSIX_ONLY
from gpufix import fsutil


@POSIX_ONLY
def test_the_temporary_file_is_new_private_and_never_an_existing_one(tmp_path, monkeypatch):
    draws = iter([b"\x00" * 8, b"\x00" * 8, b"\x01" * 8])  # the first name twice: it exists the second time
    monkeypatch.setattr(fsutil.os, "urandom", lambda n: next(draws))
    fd, first = fsutil._mkstemp(tmp_path, ".a.py.", ".gpufix-tmp")
    os.close(fd)
    assert os.path.basename(first) == ".a.py.aaaaaaaa.gpufix-tmp" and stat.S_IMODE(os.stat(first).st_mode) == 0o600
    fd, second = fsutil._mkstemp(tmp_path, ".a.py.", ".gpufix-tmp")
    os.close(fd)
    assert os.path.basename(second) == ".a.py.bbbbbbbb.gpufix-tmp"


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.py"
    target.write_bytes(b"old\n")
    fsutil.atomic_write(target, b"new\n")
    assert target.read_bytes() == b"new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a.py"]
