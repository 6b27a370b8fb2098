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
from pathlib import Path

from gpufix.fsutil import atomic_write

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


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename, a new file) durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    # Every copy and every folder entry is on disk before the manifest that vouches for them, and
    # the manifest is on disk before the caller replaces the first file.
    dirs = set()
    for e in entries:
        d = (folder / e["path"]).parent
        while d != folder and folder in d.parents:
            dirs.add(d)
            d = d.parent
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(d)
    for d in (folder, folder.parent, folder.parent.parent):
        fsync_dir(d)
    atomic_write(folder / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode(), mode=0o644)
    fsync_dir(folder)
    return folder


def find_backups_root(start: Path) -> Path:
    start = Path(start).resolve()
    for d in (start, *start.parents):
        if (d / BACKUP_DIR).is_dir():
            return d
    raise RestoreError(f"no gpufix backups found in {start} or above (nothing to restore)")


def _valid_manifest(data) -> bool:
    """A manifest gpufix can act on (anything else, hand-edited or foreign, is skipped)."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("files"), list):
        return False
    keys = ("path", "sha256_before", "sha256_after")
    return all(isinstance(e, dict) and all(isinstance(e.get(k), str) for k in keys) for e in data["files"])


def list_backups(root: Path) -> list:
    out = []
    base = root / BACKUP_DIR
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        manifest = d / "manifest.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if _valid_manifest(data):
                out.append(data)
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
        rel_parts = Path(entry["path"]).parts
        if Path(entry["path"]).is_absolute() or ".." in rel_parts:
            raise RestoreError(f"backup {manifest['id']} is damaged: its manifest names a path outside the project: {entry['path']!r}")
        target = root / entry["path"] if not entry["path"].startswith("_external/") else Path("/" + entry["path"][len("_external/"):])
        try:
            original = (folder / entry["path"]).read_bytes()
        except OSError as exc:
            raise RestoreError(f"backup {manifest['id']} is incomplete: cannot read its copy of {entry['path']}: {exc.strerror or exc}") from None
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
    done = 0
    for target, data, rel, what in plan:
        if data is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, data)
            except OSError as exc:
                raise RestoreError(
                    f"backup {manifest['id']}: restored {done} file(s), then could not write {rel}: {exc.strerror or exc}; "
                    "fix that and run restore again (files already restored are skipped)",
                    partial=done > 0,
                ) from None
            done += 1
        lines.append(f"{what}: {rel}")
    lines.append(f"backup {manifest['id']}: {sum(1 for p in plan if p[1] is not None)} file(s) restored")
    return lines


TAG_PREFIX = "gpufix/before-"


def _repo(root: Path):
    try:
        import git

        repo = git.Repo(root, search_parent_directories=True)
        return None if repo.bare else repo
    except Exception:
        return None


def inventory(root) -> list:
    """Every backup and every gpufix/before-* tag, oldest first: [{id, created, files, backup, tag}]."""
    start = Path(root).resolve()
    try:
        base = find_backups_root(start)
    except RestoreError:
        base = start
    by_id: dict = {}
    for m in list_backups(base):
        by_id[m["id"]] = {"id": m["id"], "created": m.get("created"), "files": len(m["files"]),
                          "backup": os.path.relpath(base / BACKUP_DIR / m["id"]).replace(os.sep, "/"), "tag": None}
    repo = _repo(start)
    if repo is not None:
        for tag in repo.tags:
            if tag.name.startswith(TAG_PREFIX):
                ident = tag.name[len(TAG_PREFIX):]
                item = by_id.setdefault(ident, {"id": ident, "created": None, "files": 0, "backup": None, "tag": None})
                item["tag"] = tag.name
    return sorted(by_id.values(), key=lambda it: it["id"])  # IDs start with their UTC time


def prune(root, keep: int, dry_run: bool = False) -> list:
    """Remove all but the newest `keep` backups (folders) and their git tags; lines saying what."""
    import shutil

    items = inventory(root)
    doomed = items[:max(0, len(items) - keep)]
    repo = _repo(Path(root).resolve())
    lines = []
    for it in doomed:
        verb = "would remove" if dry_run else "removed"
        if it["backup"]:
            if not dry_run:
                shutil.rmtree(it["backup"])
            lines.append(f"{verb} backup {it['backup']}")
        if it["tag"] and repo is not None:
            if not dry_run:
                repo.delete_tag(it["tag"])
            lines.append(f"{verb} tag {it['tag']}")
    lines.append(f"kept {len(items) - len(doomed)} of {len(items)}")
    return lines
