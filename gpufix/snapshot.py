"""Run snapshots: a `gpufix scan` whose inputs did not change prints what it printed last time,
after one stat per input and without importing the engine (issue 21: "warm runs only stat").

A snapshot is keyed on everything a scan's output depends on besides files: its arguments, the
current folder, the environment (less a few shell variables that change on their own), the
interpreter, gpufix's own code (file stats) and, for a terminal, its size. While a scan runs, an
audit hook (PEP 578) records what it looked at:

* every folder it lists, stamped with every entry in it (a file added, removed, renamed or edited
  anywhere in a walked folder is seen, also by the pool's workers, which read only such files);
* every file it opens for reading, stamped before it is read (an edit during the scan is never
  recorded under the new stamp);
* in every folder above those, the names gpufix looks for there (`PROBE_NAMES`: the config files
  and the project markers), present or absent;
* for `git ls-files` (the .gitignore question), the files git reads: its index, its excludes and
  every config file `git config --list --show-origin` names;
* the caches it used, stamped once it has saved them, each with the project its signature binds
  it to. A cache that changed since is still good for replay when it is gone or still carries this
  user's signature for that project (another run of gpufix, such as pre-commit's on a few files,
  added entries to it: a cache is a memo, the scan's output is the same with it); one replaced,
  planted or altered is a miss, and the scan then runs and says what it thinks of that cache.

A scan is recorded only when the CLI says it is a plain one (`mark_replayable`: no --fix, --watch,
stdin, -o or --no-cache, no progress bar, no cache notice) and exits with 0 or 1; a run that writes
anywhere but a gpufix cache, starts any other program or changes folder is never recorded.

Replay: the snapshot is trusted only with this user's MAC, bound to its name and to the file's
identity on disk (as the result cache: gpufix.cache), and only when every recorded path stats as
recorded. Then its output is written again, in order, and its exit code returned. Anything else is a
miss: the scan runs as usual and records a new snapshot.

A hit imports only this module and gpufix.signing (standard library): it costs the interpreter's
start, the stats and one file read. The snapshot's body is marshal data, read only once its MAC
holds (marshal is for trusted data: this user's gpufix wrote it; the key has the interpreter's
version, whose marshal format it is).
"""

from __future__ import annotations

import hashlib
import marshal
import os
import stat as stat_mod
import sys

from gpufix import signing, userdirs

FORMAT = 2
KEEP = 32  # snapshots kept per cache folder (one per distinct command line, folder and environment)
KEEP_BYTES = 64 << 20  # and at most this much of them (a snapshot grows with the folders walked)

# What gpufix looks for in the folders above a file or a walked folder (config.find_config,
# config.marks_project / project_root, project.meta, discover's .gitignore question). A test keeps
# this list in step with gpufix.config's marker and config names.
PROBE_NAMES = ("gpufix.toml", "pyproject.toml", "setup.py", "setup.cfg", ".git", "__init__.py", ".gitignore", "src")

# Shell variables that change between two identical commands and that gpufix never reads.
_VOLATILE_ENV = frozenset({
    "_", "OLDPWD", "PWD", "SHLVL", "PS1", "PS2", "PS4", "PROMPT_COMMAND", "HISTCMD", "LINENO", "RANDOM",
    "SECONDS", "TERM_SESSION_ID", "WINDOWID", "SSH_AUTH_SOCK", "SSH_AGENT_PID", "SSH_CLIENT", "SSH_CONNECTION",
})

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _stamp(path: str, listed: bool = False):
    """What a path is now (lstat, never following a link): None when absent; a folder's stamp
    leaves out its modification time unless it is `listed` (its entries are then its content)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return ["error", exc.errno]
    if stat_mod.S_ISDIR(st.st_mode):
        return ["d", st.st_ino, st.st_mode, st.st_mtime_ns if listed else 0]
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode]


def _package_files():
    """gpufix's own code and rule catalogue: (path, stat) of each file, in a stable order."""
    here = os.path.dirname(os.path.abspath(__file__))
    tops = [here]
    for candidate in (os.path.join(here, "_catalog"), os.path.join(os.path.dirname(here), "rules")):
        if os.path.isdir(os.path.join(candidate, "apis")):
            tops.append(candidate)
            break
    out = []
    for top in tops:
        stack = [top]
        while stack:
            d = stack.pop()
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    if e.name != "__pycache__":
                        stack.append(e.path)
                elif e.name.endswith((".py", ".toml")):
                    try:
                        out.append((e.path, e.stat(follow_symlinks=False)))
                    except OSError:
                        continue
    return out


_CODE_STAMP: list = []


def code_stamp() -> str:
    """A digest of gpufix's version and of the stats (size, modification time) of its code and
    catalogue files: a new release, an edited rule or a reinstalled checkout changes it. Once per
    process (the key is made before the scan starts; the result cache asks again)."""
    if not _CODE_STAMP:
        _CODE_STAMP.append(_code_stamp())
    return _CODE_STAMP[0]


def _code_stamp() -> str:
    from gpufix import __version__

    h = hashlib.blake2b(digest_size=12)
    h.update(__version__.encode())
    for path, st in _package_files():
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _terminal() -> list:
    ttys = []
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            ttys.append(bool(stream is not None and stream.isatty()))
        except (ValueError, AttributeError):
            ttys.append(False)
    size = None
    if ttys[1] or ttys[2]:
        import shutil

        size = list(shutil.get_terminal_size())
    return [ttys, size]


def run_key(argv) -> str:
    """The digest of what a scan's output depends on besides the files it reads."""
    env = sorted((k, v) for k, v in os.environ.items() if k not in _VOLATILE_ENV)
    doc = [FORMAT, list(argv), os.getcwd(), env, sys.executable, sys.version, list(sys.path), code_stamp(),
           _terminal()]
    return hashlib.blake2b(repr(doc).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def user_cache_dir() -> str:
    """The user cache folder for gpufix (gpufix.userdirs.user_cache_dir), on Windows worked out
    without importing platformdirs. The recorder writes a snapshot only where both agree, so a
    platform this gets wrong has no replay, never a wrong one."""
    if sys.platform == "win32":
        home = os.path.expanduser("~")
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
        return os.path.join(base, "gpufix", "Cache")
    return userdirs.user_cache_dir()


def snapshot_dir() -> str:
    env = os.environ.get("GPUFIX_CACHE_DIR")
    return os.path.join(env if env else user_cache_dir(), "runs")


_PROJECT = "gpufix-run"  # what a snapshot's MAC binds it to (a cache's binds it to its project)


# -- replay -----------------------------------------------------------------------------------------

def replay(argv) -> int | None:
    """The exit code of a replayed scan (its output written again), or None: no valid snapshot."""
    if os.environ.get("GPUFIX_NO_SNAPSHOT"):
        return None
    key = signing.read_key(os.path.join(user_cache_dir(), signing.KEY_FILE), create=False)
    if key is None:
        return None
    name = run_key(argv)
    path = os.path.join(snapshot_dir(), f"run-{name}.snap")
    body = _read_signed(key, _PROJECT, path)[1]
    if body is None:
        return None
    try:
        doc = marshal.loads(body)
        if doc.get("format") != FORMAT:
            return None
        for p, want in doc["listed"]:
            if _stamp(p, listed=True) != want:
                return _missed(f"folder {p} changed")
        for p, want in doc["paths"]:
            if _stamp(p) != want:
                return _missed(f"{p} changed")
        restamped = []
        for p, want, project in doc["caches"]:
            now = _stamp(p)
            if now != want:
                if not _still_ours(key, p, project):
                    return _missed(f"cache {p} changed")
                restamped.append((p, now, project))
            else:
                restamped.append((p, want, project))
        output, code = doc["output"], doc["code"]
    except Exception:  # a snapshot of another shape: a miss, never a failed command
        return None
    if restamped != doc["caches"]:
        # The changed caches are this user's gpufix's: the snapshot takes their new stamps, so
        # that the next replay stats them instead of reading and verifying them again.
        doc["caches"] = restamped
        try:
            _save(name, marshal.dumps(doc))
        except (OSError, ValueError):
            pass
    try:
        _write_output(output)
    except BrokenPipeError:
        # As the scan itself ends (rich's console): the reader left (`| head`); exit 1, and no
        # second error when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


def _read_signed(key: bytes, project: str, path: str) -> tuple:
    """(found, body) of a file gpufix signs: found False when it does not exist; body None when
    it is not a regular file reached without a link and signed with `key` for `project`, its name
    and its identity on disk."""
    try:
        got = signing.read_nofollow(path)
    except signing.Rejected:
        return True, None
    if got is None:
        return False, None
    return True, signing.verified_body(key, project, path, got[0], got[1])


def _still_ours(key: bytes, path: str, project) -> bool:
    """Whether a cache file that changed since the snapshot would be read without a word: gone,
    or still signed with this user's key for its project."""
    if project is None:
        return not os.path.lexists(path)
    found, body = _read_signed(key, project, path)
    return not found or body is not None


def _missed(why: str) -> None:
    """GPUFIX_SNAPSHOT_DEBUG=1: say on stderr why a snapshot was not replayed."""
    if os.environ.get("GPUFIX_SNAPSHOT_DEBUG"):
        sys.stderr.write(f"gpufix: snapshot not replayed: {why}\n")
    return None


def _write_output(output) -> None:
    for which, data in output:
        stream = sys.stdout if which == 1 else sys.stderr
        if isinstance(data, str):
            stream.write(data)
        else:
            stream.flush()
            stream.buffer.write(data)
    sys.stdout.flush()
    sys.stderr.flush()


# -- recording --------------------------------------------------------------------------------------

class _Tee:
    """A stream that writes through to `inner` and remembers what was written (text as str, the
    binary `buffer`'s writes as bytes), in order with the other stream's writes. A write or flush
    that fails (a closed pipe, a full disk) tells `failed`: that output is not the scan's whole."""

    def __init__(self, inner, which: int, log: list, failed, binary: bool = False):
        self._inner, self._which, self._log, self._failed, self._binary = inner, which, log, failed, binary
        if not binary:
            self.buffer = _Tee(inner.buffer, which, log, failed, True) if hasattr(inner, "buffer") else None

    def write(self, data):
        try:
            written = self._inner.write(data)
        except TypeError:  # a probe such as click's write(b"") on a text stream: not output
            raise
        except BaseException:
            self._failed("a write failed")
            raise
        self._log.append((self._which, bytes(data) if self._binary else str(data)))
        return written

    def flush(self):
        try:
            return self._inner.flush()
        except BaseException:
            self._failed("a write failed")
            raise

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _by_import_system() -> bool:
    """Whether the audited call was made by Python's import system (finding or loading a module)."""
    try:
        caller = sys._getframe(2)  # 0: this function, 1: the hook, 2: the code that raised the event
    except ValueError:
        return False
    return caller.f_code.co_filename.startswith("<frozen importlib")


class Recorder:
    """What one scan looked at (see the module's doc), gathered by an audit hook."""

    def __init__(self, argv):
        self.argv = list(argv)
        self.key = run_key(argv)
        self.pid = os.getpid()
        self.listed: dict = {}
        self.paths: dict = {}
        self.above_done: set = set()
        self.caches: set = set()  # gpufix's own cache files this run read or wrote
        self.bindings: dict = {}  # cache file -> the project its signature binds it to (note_cache)
        self.git = False
        self.refused: str | None = None
        self.replayable = False
        self.busy = False
        self.log: list = []
        cache_env = os.environ.get("GPUFIX_CACHE_DIR")
        users = os.path.abspath(userdirs.user_cache_dir())
        if users != os.path.abspath(user_cache_dir()):
            self.refuse("the user cache folder is not where replay would look")
        self.own = [users] + ([os.path.abspath(cache_env)] if cache_env else [])
        import sysconfig

        # A library installed, upgraded or removed changes its folder's listing (gpufix's own code
        # is in the key). What the import system itself lists and opens is not the scan's input.
        libraries = {os.path.abspath(v) for k, v in sysconfig.get_paths().items() if k in ("purelib", "platlib")}
        for p in sys.path:
            if p and os.path.abspath(p) in libraries and os.path.isdir(p):
                self.listed[os.path.abspath(p)] = _stamp(os.path.abspath(p), listed=True)
        cwd = os.getcwd()
        self._above(cwd, include_self=True)
        for a in self.argv[1:]:
            if not a.startswith("-"):
                p = os.path.abspath(a)
                self.paths.setdefault(p, _stamp(p))
                self._above(p)

    def start(self) -> None:
        sys.stdout = _Tee(sys.stdout, 1, self.log, self.refuse)
        sys.stderr = _Tee(sys.stderr, 2, self.log, self.refuse)
        sys.addaudithook(self._hook)

    def refuse(self, why: str) -> None:
        if self.refused is None:
            self.refused = why

    # The hook runs for every audited event of the process (and of forked workers: ignored there).
    def _hook(self, event, args):
        if self.busy or self.refused is not None:
            return
        if event in ("open", "os.scandir", "os.listdir") and _by_import_system():
            return  # a module's bytecode or its package's folder: gpufix's code, not the scan's input
        if event == "open":
            self._opened(args)
        elif event in ("os.scandir", "os.listdir"):
            self._listing(args[0] if args else ".")
        elif event == "subprocess.Popen":
            self._program(args)
        elif event in ("os.chdir", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile") and (
                os.getpid() == self.pid):
            self.refuse(event)

    def _own(self, p: str) -> bool:
        return any(p == o or p.startswith(os.path.join(o, "")) for o in self.own) or (
            f"{os.sep}.gpufix{os.sep}" in p)

    def _opened(self, args) -> None:
        path = args[0] if args else None
        if isinstance(path, int) or path is None or os.getpid() != self.pid:
            return
        self.busy = True
        try:
            p = os.path.abspath(os.fsdecode(path))
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            writes = bool(flags & _WRITE_FLAGS) or any(c in mode for c in "wax+")
            if p == os.devnull:
                return
            if self._own(p):
                self.caches.add(p)
            elif writes:
                self.refuse(f"wrote {p}")
            elif p not in self.paths:
                self.paths[p] = _stamp(p)
                self._above(os.path.dirname(p))
        finally:
            self.busy = False

    def _listing(self, path) -> None:
        if os.getpid() != self.pid or isinstance(path, int):
            return
        self.busy = True
        try:
            d = os.path.abspath(os.fsdecode(path if path is not None else "."))
            if d in self.listed or self._own(d):
                return
            self.listed[d] = _stamp(d, listed=True)
            try:
                with os.scandir(d) as it:
                    names = [e.name for e in it]
            except OSError:
                names = []
            for name in names:
                p = os.path.join(d, name)
                st = _stamp(p)
                self.paths.setdefault(p, st)
                if st is not None and st[0] != "d" and stat_mod.S_ISLNK(st[3]):
                    target = os.path.realpath(p)  # a link's target: present or not, edited or not
                    self.paths.setdefault(target, _stamp(target))
            self._above(d)
        finally:
            self.busy = False

    def _above(self, d: str, include_self: bool = False) -> None:
        """Stamp what gpufix probes in `d`'s ancestors (and in `d` itself with include_self)."""
        d = d if include_self else os.path.dirname(d)
        while d not in self.above_done:
            self.above_done.add(d)
            self.paths.setdefault(d, _stamp(d))
            for name in PROBE_NAMES:
                p = os.path.join(d, name)
                self.paths.setdefault(p, _stamp(p))
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent

    def _program(self, args) -> None:
        if os.getpid() != self.pid:
            return
        argv = args[1] if len(args) > 1 else None
        argv = [argv] if isinstance(argv, (str, bytes)) else list(argv or [])
        exe = os.path.basename(os.fsdecode(argv[0])).lower() if argv else ""
        if exe in ("git", "git.exe") and "ls-files" in argv:
            self.git = True
            cwd = args[2] if len(args) > 2 else None
            if "-C" in argv and argv.index("-C") + 1 < len(argv):
                cwd = argv[argv.index("-C") + 1]
            self.busy = True
            try:
                self._git_inputs(os.path.abspath(os.fsdecode(cwd or ".")))
            finally:
                self.busy = False
        else:
            self.refuse(f"ran {exe}")

    def _git_inputs(self, where: str) -> None:
        """Stamp what `git ls-files --others --ignored --exclude-standard` reads besides the work
        tree's folders: the repository's index, info/exclude and config, and git's config files."""
        d = where
        while True:
            dot = os.path.join(d, ".git")
            st = _stamp(dot)
            if st is not None:
                self.paths.setdefault(dot, st)
                gitdir = dot
                if st[0] != "d":
                    try:
                        with open(dot, encoding="utf-8", errors="replace") as fh:
                            line = fh.readline().strip()
                    except OSError:
                        line = ""
                    gitdir = os.path.join(d, line[len("gitdir:"):].strip()) if line.startswith("gitdir:") else dot
                for rel in ("index", os.path.join("info", "exclude"), "config", "commondir"):
                    p = os.path.join(gitdir, rel)
                    self.paths.setdefault(p, _stamp(p))
                break
            parent = os.path.dirname(d)
            if parent == d:
                break
            d = parent

    def _git_config_files(self) -> None:
        import subprocess

        try:
            done = subprocess.run(["git", "config", "--list", "--show-origin", "-z"], check=False, capture_output=True,
                                  stdin=subprocess.DEVNULL, timeout=30, cwd=os.getcwd())
        except (OSError, subprocess.SubprocessError):
            self.refuse("git config failed")
            return
        values = done.stdout.decode("utf-8", "surrogateescape").split("\0")
        for i, item in enumerate(values):
            if item.startswith("file:"):
                p = os.path.abspath(item[len("file:"):])
                self.paths.setdefault(p, _stamp(p))
            elif item.lower().startswith("core.excludesfile\n"):
                p = os.path.abspath(os.path.expanduser(item.split("\n", 1)[1]))
                self.paths.setdefault(p, _stamp(p))
        home = os.path.expanduser("~")
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        for p in (os.path.join(home, ".gitconfig"), os.path.join(xdg, "git", "config"), os.path.join(xdg, "git", "ignore")):
            self.paths.setdefault(p, _stamp(p))

    def finish(self, code) -> None:
        """Write the snapshot when the scan was a plain one and ended with 0 or 1."""
        if os.getpid() != self.pid:
            return
        self.busy = True  # nothing below is the scan's own reading
        if not (self.replayable and self.refused is None and code in (0, 1)):
            if os.environ.get("GPUFIX_SNAPSHOT_DEBUG"):
                sys.__stderr__.write(f"gpufix: no snapshot recorded: {self.refused or 'not a plain scan'}\n")
            return
        if self.git:
            self._git_config_files()
            if self.refused is not None:
                return
        # The caches as saved: one replaced, altered or removed since (or its folder swapped for
        # a link) is a miss. Not their folders' listings: a shared cache folder gets other
        # projects' files, which change nothing here.
        caches = []
        for p in sorted(self.caches):
            caches.append((p, _stamp(p), self.bindings.get(p)))
            self.paths[os.path.dirname(p)] = _stamp(os.path.dirname(p))
        doc = {
            "format": FORMAT,
            "listed": sorted(self.listed.items()),
            "paths": sorted(self.paths.items()),
            "caches": caches,
            "output": self.log,
            "code": code,
        }
        try:
            _save(self.key, marshal.dumps(doc))
        except (OSError, ValueError):
            pass  # no snapshot: the next run scans again


def _save(key: str, body: bytes) -> None:
    user = signing.read_key(os.path.join(userdirs.user_cache_dir(), signing.KEY_FILE))
    if user is None:
        return
    folder = snapshot_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"run-{key}.snap")
    if os.path.islink(path) or os.path.islink(folder):
        return
    signing.write_signed(path, user, _PROJECT, body)
    # Keep the newest KEEP within KEEP_BYTES: every distinct command line (pre-commit's file lists)
    # has its own.
    runs = []
    with os.scandir(folder) as it:
        for e in it:
            if e.name.startswith("run-") and e.name.endswith(".snap") and e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                runs.append((st.st_mtime_ns, st.st_size, e.path))
    kept, total = 0, 0
    for _, size, old in sorted(runs, reverse=True):
        kept, total = kept + 1, total + size
        if kept > KEEP or (total > KEEP_BYTES and kept > 1):
            try:
                os.unlink(old)
            except OSError:
                pass


_ACTIVE: Recorder | None = None


def begin(argv) -> Recorder | None:
    global _ACTIVE
    if os.environ.get("GPUFIX_NO_SNAPSHOT") or "--no-cache" in argv:
        return None  # --no-cache: nothing of this run is kept, not even the snapshot folder
    try:
        # Made before anything is stamped: a folder created at the end would change the listing
        # of the cache folder the scan reads, and the next run would not be replayed.
        os.makedirs(snapshot_dir(), exist_ok=True)
    except OSError:
        return None
    _ACTIVE = Recorder(argv)
    _ACTIVE.start()
    return _ACTIVE


def mark_replayable() -> None:
    """Called by the CLI for a plain scan: its output may be replayed when nothing changed."""
    if _ACTIVE is not None:
        _ACTIVE.replayable = True


def note_cache(path, project: str) -> None:
    """Called by the result cache for each file it reads or writes: the project its signature
    binds it to, so that replay can check a cache that changed since (_still_ours)."""
    if _ACTIVE is not None and os.getpid() == _ACTIVE.pid:
        _ACTIVE.bindings[os.path.abspath(os.fspath(path))] = project


def not_replayable(why: str) -> None:
    """Called where a scan's output says something about this run only (a cache notice, a progress
    bar): it is never replayed."""
    if _ACTIVE is not None:
        _ACTIVE.refuse(why)
