"""Backups before any write, atomic writes, and `gpufix restore`.

A backup is `.gpufix/backups/<ID>/<relative path>` for each file about to change, plus
`manifest.json` (`id`, `created`, `root`, and each file's `path`, `sha256_before`, `sha256_after`),
all written and flushed before the first file is replaced.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
import stat
import tempfile
from pathlib import Path

BACKUP_DIR = Path(".gpufix") / "backups"


class RestoreError(Exception):
    def __init__(self, message: str, partial: bool = False):
        super().__init__(message)
        self.partial = partial


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_backup_id() -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f"-{now.microsecond // 1000:03d}-{secrets.token_hex(2)}"


def atomic_write(path: Path, data: bytes, mode: int = None) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".gpufix-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def relative_in_root(path: Path, root: Path) -> str:
    try:
        return Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        # Outside the project root: keep it under a folder of its own, never outside the backup.
        return "_external/" + Path(os.path.abspath(path)).as_posix().lstrip("/").replace(":", "")


def write_backup(root: Path, backup_id: str, files: list) -> Path:
    """files: [(absolute path, original bytes, new bytes)]. Returns the backup folder."""
    folder = root / BACKUP_DIR / backup_id
    folder.mkdir(parents=True, exist_ok=False)
    gitignore = root / ".gpufix" / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("# created by gpufix\n*\n", encoding="utf-8")
    entries = []
    for abs_path, before, after in files:
        rel = relative_in_root(Path(abs_path), root)
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, before, mode=0o644)
        entries.append({"path": rel, "sha256_before": sha256(before), "sha256_after": sha256(after)})
    manifest = {
        "id": backup_id,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "root": str(root),
        "files": entries,
    }
    atomic_write(folder / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode(), mode=0o644)
    return folder


def find_backups_root(start: Path) -> Path:
    start = Path(start).resolve()
    for d in (start, *start.parents):
        if (d / BACKUP_DIR).is_dir():
            return d
    raise RestoreError(f"no gpufix backups found in {start} or above (nothing to restore)")


def list_backups(root: Path) -> list:
    out = []
    base = root / BACKUP_DIR
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        manifest = d / "manifest.json"
        if manifest.is_file():
            try:
                out.append(json.loads(manifest.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
    out.sort(key=lambda m: (m.get("created", ""), m.get("id", "")))
    return out


def restore_backup(root, backup_id=None, force: bool = False) -> list:
    """Put back the files of a backup; refuses (writing nothing) a file changed since the apply."""
    root = find_backups_root(Path(root))
    backups = list_backups(root)
    if not backups:
        raise RestoreError(f"no complete backup under {root / BACKUP_DIR}")
    if backup_id is None:
        manifest = backups[-1]
    else:
        matches = [m for m in backups if m.get("id") == backup_id]
        if not matches:
            known = ", ".join(m.get("id", "?") for m in backups[-5:])
            raise RestoreError(f"no backup {backup_id!r}; latest: {known}")
        manifest = matches[0]
    folder = root / BACKUP_DIR / manifest["id"]
    plan = []
    changed = []
    for entry in manifest["files"]:
        target = root / entry["path"] if not entry["path"].startswith("_external/") else Path("/" + entry["path"][len("_external/"):])
        original = (folder / entry["path"]).read_bytes()
        if sha256(original) != entry["sha256_before"]:
            raise RestoreError(f"backup {manifest['id']} is damaged: {entry['path']} does not match its recorded hash")
        try:
            current = target.read_bytes()
        except FileNotFoundError:
            current = None
        if current is not None and sha256(current) == entry["sha256_before"]:
            plan.append((target, None, entry["path"], "already original"))
            continue
        if current is None or sha256(current) != entry["sha256_after"]:
            changed.append(entry["path"])
            if not force:
                continue
        plan.append((target, original, entry["path"], "restored"))
    if changed and not force:
        raise RestoreError(
            f"not restoring backup {manifest['id']}: {len(changed)} file(s) changed since the apply: "
            + ", ".join(changed) + " (use --force to overwrite them)"
        )
    lines = []
    for target, data, rel, what in plan:
        if data is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)
        lines.append(f"{what}: {rel}")
    lines.append(f"backup {manifest['id']}: {sum(1 for p in plan if p[1] is not None)} file(s) restored")
    return lines
