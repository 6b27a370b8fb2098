"""Backups before any write, atomic writes, and `gpufix restore`.

A backup is `.gpufix/backups/<ID>/<relative path>` for each file about to change, plus
`manifest.json` (`id`, `created`, `root`, and each file's `path`, `sha256_before`, `sha256_after`),
all written and flushed before the first file is replaced. Copies and manifests are private (0600
in 0700 folders): a backup of a `.env` must not be readable by others.

What is under `.gpufix/` came with the repository as far as gpufix knows: it is data to validate,
never authority. A backup's ID is a plain name equal to its folder's; each path it names is
relative and stays inside the project (`_external/` copies of files that were outside the project
are never written back outside it); nothing under `.gpufix/` is followed through a symlink; a
backup that fails these checks is ignored with a notice.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets
import stat
import sys
from pathlib import Path

from gpufix.fsutil import atomic_write

BACKUP_DIR = Path(".gpufix") / "backups"
EXTERNAL = "_external/"
# what new_backup_id makes, and any other plain name: no separator, no `..`, not hidden
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _notice(message: str) -> None:
    from gpufix.report.safe import for_terminal

    sys.stderr.write(f"gpufix: warning: {for_terminal(message)}\n")


def valid_id(ident) -> bool:
    return isinstance(ident, str) and bool(_ID_RE.fullmatch(ident)) and ".." not in ident


def _is_real_dir(path: Path) -> bool:
    """A folder, not a symlink to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _private_dir(path: Path, base: Path = None) -> None:
    """Make `path` a 0700 folder, with its missing parents down from `base` (default: its parent,
    which must exist); every folder on the way below `base` must be a real folder, not a symlink."""
    base = path.parent if base is None else base
    d = base
    for part in path.relative_to(base).parts:
        d = d / part
        if os.path.lexists(d):
            if not _is_real_dir(d):
                raise OSError(f"{d} is a symlink or not a folder; gpufix does not write through it")
            continue
        os.mkdir(d, 0o700)
        os.chmod(d, 0o700)


def _read_nofollow(path: Path) -> bytes:
    """The bytes of a regular file, never through a symlink (its last component)."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return fh.read()


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


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
        return EXTERNAL + Path(os.path.abspath(path)).as_posix().lstrip("/").replace(":", "")


def write_backup(root: Path, backup_id: str, files: list) -> Path:
    """files: [(absolute path, original bytes, new bytes)]. Returns the backup folder."""
    if not valid_id(backup_id):
        raise ValueError(f"not a backup ID: {backup_id!r}")
    # `.gpufix` and `.gpufix/backups` may have come with the repository: a symlink there would
    # send the copies anywhere, so each folder is checked (lstat) and made private.
    _private_dir(root / ".gpufix")
    _private_dir(root / BACKUP_DIR)
    folder = root / BACKUP_DIR / backup_id
    os.mkdir(folder, 0o700)
    os.chmod(folder, 0o700)
    gitignore = root / ".gpufix" / ".gitignore"
    if not os.path.lexists(gitignore):
        fd = os.open(gitignore, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("# created by gpufix\n*\n")
    entries = []
    for abs_path, before, after in files:
        rel = relative_in_root(Path(abs_path), root)
        target = folder / rel
        _private_dir(target.parent, folder)
        atomic_write(target, before, mode=0o600)
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
    atomic_write(folder / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode(), mode=0o600)
    fsync_dir(folder)
    return folder


def find_backups_root(start: Path) -> Path:
    start = Path(start).resolve()
    for d in (start, *start.parents):
        if (d / BACKUP_DIR).is_dir():
            if not (_is_real_dir(d / ".gpufix") and _is_real_dir(d / BACKUP_DIR)):
                raise RestoreError(f"{d / BACKUP_DIR} is reached through a symlink: gpufix does not follow it (remove the link)")
            return d
    raise RestoreError(f"no gpufix backups found in {start} or above (nothing to restore)")


def _manifest_problem(data, folder_name: str):
    """Why a manifest cannot be acted on (hand-edited, foreign or planted), or None."""
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return "it is not a gpufix manifest"
    if not valid_id(data.get("id")) or data["id"] != folder_name:
        return f"its id {data.get('id')!r} is not its folder's name"
    keys = ("path", "sha256_before", "sha256_after")
    for e in data["files"]:
        if not (isinstance(e, dict) and all(isinstance(e.get(k), str) for k in keys)):
            return "a file entry is malformed"
        p = e["path"]
        parts = p.split("/")
        if not p or p.startswith("/") or "\\" in p or ":" in p.split("/")[0] or any(x in ("", ".", "..") for x in parts):
            return f"it names a path outside the project (or not a plain relative one): {p!r}"
    return None


def list_backups(root: Path, notice=_notice) -> list:
    """The valid backups under root/.gpufix/backups (oldest first); each one that fails
    validation is ignored with a notice, and nothing there is followed through a symlink."""
    out = []
    base = root / BACKUP_DIR
    if not (_is_real_dir(root / ".gpufix") and _is_real_dir(base)):
        if os.path.lexists(base) or os.path.lexists(root / ".gpufix"):
            if os.path.islink(root / ".gpufix") or os.path.islink(base):
                notice(f"ignoring {base}: it is a symlink (gpufix does not follow links under .gpufix/)")
        return out
    for d in sorted(base.iterdir()):
        if not _is_real_dir(d):
            if os.path.islink(d):
                notice(f"ignoring backup {d.name}: it is a symlink")
            continue
        manifest = d / "manifest.json"
        if not os.path.lexists(manifest):
            continue  # an interrupted backup (no manifest yet): nothing to act on
        try:
            data = json.loads(_read_nofollow(manifest).decode("utf-8"))
        except (OSError, ValueError) as exc:
            notice(f"ignoring backup {d.name}: cannot read its manifest ({getattr(exc, 'strerror', None) or exc})")
            continue
        problem = _manifest_problem(data, d.name)
        if problem:
            notice(f"ignoring backup {d.name}: {problem}")
            continue
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
    real_root = os.path.realpath(root)
    real_folder = os.path.realpath(folder)
    plan = []
    changed = []
    outside = []
    for entry in manifest["files"]:
        rel = entry["path"]
        if rel.startswith(EXTERNAL):
            target = Path("/" + rel[len(EXTERNAL):])
            if not _under(os.path.realpath(target), real_root):
                outside.append((rel, target))
                continue
        else:
            target = root / rel
        # The target's folder, with every link in it followed, must be in the project; the target
        # itself must not be a link (a rename over it would not restore the file it points to).
        if not _under(os.path.realpath(target.parent), real_root) or os.path.islink(target):
            raise RestoreError(f"backup {manifest['id']}: {rel} is reached through a symlink that leads outside the "
                               f"project or is one; nothing was restored")
        copy = folder / rel
        try:
            if not _under(os.path.realpath(copy.parent), real_folder):
                raise OSError("its folder is a symlink")
            original = _read_nofollow(copy)
        except OSError as exc:
            raise RestoreError(f"backup {manifest['id']} is incomplete: cannot read its copy of {rel}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        if sha256(original) != entry["sha256_before"]:
            raise RestoreError(f"backup {manifest['id']} is damaged: {rel} does not match its recorded hash")
        try:
            current = _read_nofollow(target)
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise RestoreError(f"backup {manifest['id']}: cannot read {rel}: {getattr(exc, 'strerror', None) or exc}") from None
        if current is not None and sha256(current) == entry["sha256_before"]:
            plan.append((target, None, rel, "already original"))
            continue
        if current is None or sha256(current) != entry["sha256_after"]:
            changed.append(rel)
            if not force:
                continue
        plan.append((target, original, rel, "restored"))
    if outside:
        raise RestoreError(
            f"not restoring backup {manifest['id']}: it names {len(outside)} file(s) outside the project "
            + ", ".join(str(t) for _, t in outside[:5])
            + "; gpufix restore never writes outside the project (copy them back by hand from "
            + ", ".join(str(folder / r) for r, _ in outside[:5]) + " if you made this backup); nothing was restored"
        )
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
                atomic_write(target, data, follow_links=False)  # checked not a link: never through one
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


def inventory(root, keep_folders: bool = False) -> list:
    """Every backup and every gpufix/before-* tag, oldest first: [{id, created, files, backup, tag}]."""
    start = Path(root).resolve()
    try:
        base = find_backups_root(start)
    except RestoreError:
        base = start
    by_id: dict = {}
    for m in list_backups(base):
        by_id[m["id"]] = {"id": m["id"], "created": m.get("created"), "files": len(m["files"]),
                          "backup": os.path.relpath(base / BACKUP_DIR / m["id"]).replace(os.sep, "/"), "tag": None,
                          "_folder": str(base / BACKUP_DIR / m["id"])}
    repo = _repo(start)
    if repo is not None:
        for tag in repo.tags:
            if tag.name.startswith(TAG_PREFIX):
                ident = tag.name[len(TAG_PREFIX):]
                item = by_id.setdefault(ident, {"id": ident, "created": None, "files": 0, "backup": None, "tag": None})
                item["tag"] = tag.name
    items = sorted(by_id.values(), key=lambda it: it["id"])  # IDs start with their UTC time
    if not keep_folders:
        for it in items:
            it.pop("_folder", None)
    return items


def prune(root, keep: int, dry_run: bool = False) -> list:
    """Remove all but the newest `keep` backups (folders) and their git tags; lines saying what."""
    import shutil

    items = inventory(root, keep_folders=True)
    doomed = items[:max(0, len(items) - keep)]
    repo = _repo(Path(root).resolve())
    lines = []
    for it in doomed:
        verb = "would remove" if dry_run else "removed"
        if it["backup"]:
            folder = Path(it["_folder"])
            # Only a real folder directly under .gpufix/backups/ whose name is the validated ID.
            if not (valid_id(folder.name) and _is_real_dir(folder) and _is_real_dir(folder.parent)
                    and _is_real_dir(folder.parent.parent)):
                lines.append(f"skipped backup {it['backup']}: not a folder under {BACKUP_DIR.as_posix()}")
                continue
            if not dry_run:
                shutil.rmtree(folder)
            lines.append(f"{verb} backup {it['backup']}")
        if it["tag"] and repo is not None:
            if not dry_run:
                repo.delete_tag(it["tag"])
            lines.append(f"{verb} tag {it['tag']}")
    lines.append(f"kept {len(items) - len(doomed)} of {len(items)}")
    return lines
