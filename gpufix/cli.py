"""The command line: maps options onto the policy and calls the pipeline. Nothing else lives here.

Options follow ruff's where ruff has one (`--select/--extend-select/--ignore`, `--output-format`,
`--statistics`, `--show-settings`, `--force-exclude`, `--stdin-filename`, ...). Imports are lazy so
that `gpufix scan` on a few files (the pre-commit case) loads only what it uses.
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

from gpufix import __version__

FORMATS = ("text", "full", "concise", "json", "json-lines", "junit", "github", "gitlab", "pylint", "sarif")
DOCUMENT_FORMATS = ("json", "json-lines", "junit", "gitlab", "sarif")


def _split_codes(values) -> tuple:
    """Repeatable options, each a comma list: `--select GPU1 --select GPU001,GPU002`."""
    if not values:
        return ()
    if isinstance(values, str):
        values = (values,)
    return tuple(c.strip() for v in values for c in v.split(",") if c.strip())


def _remember_file_kinds(ctx, param, value):
    if value is not None:
        ctx.meta["gpufix.file_kinds"] = value
    return value


def _remember(key: str):
    """A callback that keeps an option out of the commands' signatures (make_resolver reads it):
    the commands that share these options stay easy to extend."""

    def callback(ctx, param, value):
        if value:
            ctx.meta["gpufix." + key] = _split_codes(value)
        return value

    return callback


def shared_options(fn):
    """The options scan and apply share (ruff's names, with gpufix's older ones as aliases)."""
    decorators = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False), metavar="FILE",
                     help="Policy file (pyproject.toml or gpufix.toml) for every file; default: the nearest config above each file."),
        click.option("--select", multiple=True, metavar="CODES",
                     help="Rules to enable, replacing the config's selection: codes, prefixes (GPU1) or ALL. Repeatable, comma lists."),
        click.option("--extend-select", multiple=True, metavar="CODES",
                     help="Rules to enable in addition to the config's selection. Repeatable, comma lists."),
        click.option("--ignore", multiple=True, metavar="CODES",
                     help="Rules to disable, in addition to the config's ignore. Repeatable, comma lists."),
        click.option("--visible-devices", default=None, metavar="VALUE",
                     help="CUDA_VISIBLE_DEVICES value to enforce (overrides the policy)."),
        click.option("--header-scope", type=click.Choice(["gpu-modules", "entrypoints", "all"]), default=None,
                     help="Which files must set the mask (overrides the policy)."),
        click.option("--format", "--output-format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
                     help="Report format (text = full)."),
        click.option("-o", "--output", "--output-file", "output", type=click.Path(dir_okay=False, writable=True),
                     default=None, metavar="FILE", help="Write the report to FILE."),
        click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings."),
        click.option("-q", "--quiet", is_flag=True, help="Print only the report (no progress or notes)."),
        click.option("--statistics", is_flag=True, help="Print a count per rule instead of the findings."),
        click.option("--show-fixes/--no-show-fixes", default=False,
                     help="Show each finding's fix (scan) or the fixes applied (apply)."),
        click.option("--show-settings", is_flag=True, help="Print the settings the first path is checked with, and exit."),
        click.option("--show-files", is_flag=True, help="Print the files that would be checked, and exit."),
        click.option("--force-exclude/--no-force-exclude", default=False,
                     help="Apply `exclude` also to files named on the command line (what the pre-commit hooks use)."),
        click.option("--stdin-filename", default=None, metavar="PATH",
                     help="Read the code from stdin (also `-` as the path); PATH names it for the config and reports."),
        click.option("--exclude", "exclude", multiple=True, metavar="GLOBS", expose_value=False, callback=_remember("exclude"),
                     help="Files and folders to skip, replacing the config's `exclude` (globs from the project root). Repeatable, comma lists."),
        click.option("--extend-exclude", multiple=True, metavar="GLOBS", expose_value=False, callback=_remember("extend_exclude"),
                     help="Files and folders to skip in addition to the config's `exclude`. Repeatable, comma lists."),
        click.option("--no-cache", is_flag=True, help="Do not read or write the result cache."),
        click.option("--no-prefilter", is_flag=True, help="Parse every file (slower; same findings)."),
        click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None, help="Worker processes (default: all cores)."),
        # Kept out of the commands' signatures: the callback hands it to load_policy_from_flags.
        click.option("--file-kinds", default=None, expose_value=False, callback=_remember_file_kinds,
                     help="Comma list of the kinds of files to read (overrides the policy's file-kinds): "
                          "python, notebook, shell, dockerfile, dotenv, yaml, json, toml."),
    ]
    for dec in reversed(decorators):
        fn = dec(fn)
    return fn


def fail(message: str, code: int = 2):
    from gpufix.report.safe import for_terminal

    click.echo(f"gpufix: error: {for_terminal(message)}", err=True)  # paths from the repository: one line
    sys.exit(code)


def warn(message: str) -> None:
    from gpufix.report.safe import for_terminal

    click.echo(f"gpufix: warning: {for_terminal(message)}", err=True)


def make_resolver(config_file, select, extend_select, ignore, visible_devices, header_scope):
    """A PolicyResolver (nearest config per file, flags on top); a bad config or an unknown rule
    code is a usage error (exit 2)."""
    from gpufix.config import ConfigError, PolicyResolver

    ctx = click.get_current_context(silent=True)
    overrides = {
        "visible_devices": visible_devices,
        "select": _split_codes(select) or None,
        "extend_select": _split_codes(extend_select),
        "ignore": _split_codes(ignore),
        "header_scope": header_scope,
        "file_kinds": ctx.meta.get("gpufix.file_kinds") if ctx is not None else None,
        "exclude": ctx.meta.get("gpufix.exclude", ()) if ctx is not None else (),
        "extend_exclude": ctx.meta.get("gpufix.extend_exclude", ()) if ctx is not None else (),
    }
    try:
        return PolicyResolver(config_file, overrides)
    except ConfigError as exc:
        fail(str(exc))


def resolve(resolver, path):
    from gpufix.config import ConfigError

    try:
        return resolver.for_path(path)
    except ConfigError as exc:
        fail(str(exc))


@contextlib.contextmanager
def report_stream(output):
    """The report's stream. `-o FILE` is written whole or not at all: the report is made in memory
    and replaces FILE atomically once complete, so an error while rendering leaves FILE as it was
    (never a truncated report that a CI step would read)."""
    if output:
        import io

        from gpufix.fsutil import atomic_write

        buf = io.StringIO(newline="\n")
        yield buf
        try:
            # surrogates cannot remain (the reporters escape them); backslashreplace is a last guard
            atomic_write(output, buf.getvalue().encode("utf-8", "backslashreplace"), durable=False)
        except OSError as exc:
            fail(f"{output}: cannot write the report: {exc.strerror or exc}")
    else:
        yield sys.stdout


def no_color() -> bool:
    """NO_COLOR set and not empty (no-color.org): no escape sequence at all, not even bold or dim
    (rich's own NO_COLOR handling drops colours but keeps those)."""
    return bool(os.environ.get("NO_COLOR"))


def color_for(stream):
    """None (rich decides from the terminal and FORCE_COLOR) for stdout; never for a file or under
    NO_COLOR."""
    return None if stream is sys.stdout and not no_color() else False


def progress_factory(quiet: bool):
    """A rich progress bar on stderr, only for a terminal and a long enough run."""
    if quiet or not sys.stderr.isatty() or no_color():
        return None  # a bar is cursor-moving escapes: none under NO_COLOR

    def factory(total: int):
        if total < 200:
            return None
        from gpufix import snapshot
        from gpufix.report.progress import Progress

        snapshot.not_replayable("a progress bar")  # cursor moves for this run's terminal only
        return Progress(total)

    return factory


def no_policy_notice(resolver, quiet: bool) -> None:
    """One line on stderr when some files are judged without a policy (no visible-devices)."""
    if quiet:
        return
    from gpufix.discover import display_path

    missing = [p for p in resolver.policies() if not p.has_policy]
    if missing:
        where = display_path(missing[0].root) if missing[0].root else "."
        click.echo(f"gpufix: note: no policy (visible-devices) found for {where}: checking without one; "
                   "pin the allowed GPU with `gpufix init --gpu NAME|UUID` (from the GPUs NVML sees) "
                   "or `gpufix init --visible-devices N`", err=True)


def print_settings(resolver, paths) -> None:
    """`--show-settings`: the effective settings of the first path, as TOML-like lines; each
    machine setting says where its value comes from (the project's config, the user config, the
    command line, or gpufix's default)."""
    import json

    from gpufix.config import enabled_codes, user_config_path
    from gpufix.discover import display_path

    path = (paths or ["."])[0]
    policy = resolve(resolver, path)
    origins = dict(policy.origins)

    def machine(key: str, text: str) -> str:
        where = origins.get(key)
        if where is None:
            note = "no policy" if key == "visible-devices" and not policy.has_policy else "default"
        elif where.endswith("(user config)") or where.endswith("(command line)"):
            note = where
        else:
            note = display_path(where)
        return f"{text}   # {note}"

    user = user_config_path()
    lines = [
        f"Settings for: {display_path(path)}",
        f"Config file: {display_path(policy.source) if policy.source else '(none)'}",
        f"User config: {user if user is not None else '(none)'}" + ("" if user is not None and user.is_file() else " (not found)"),
        f"Project root: {display_path(policy.root) if policy.root else '.'}",
        machine("visible-devices", f"visible-devices = {json.dumps(policy.visible_devices)}"),
        machine("device-order", f"device-order = {json.dumps(policy.device_order)}"),
        f"header-scope = {json.dumps(policy.effective_header_scope)}",
        machine("min-memory-gib", f"min-memory-gib = {policy.min_memory_gib:g}"),
        machine("expect-name", f"expect-name = {json.dumps(policy.expect_name)}"),
        machine("expect-uuid", f"expect-uuid = {json.dumps(policy.expect_uuid)}"),
        f"enabled rules = {json.dumps(enabled_codes(policy))}",
        f"exclude = {json.dumps(list(policy.exclude))}",
        f"per-file-ignores = {json.dumps({g: list(c) for g, c in policy.per_file_ignores})}",
        f"api = {json.dumps([a.name for a in policy.extra_apis])}",
    ]
    click.echo("\n".join(lines))


def print_files(resolver, paths, force_exclude) -> None:
    from gpufix.discover import discover_files, native_path

    for _, display, _ in discover_files(list(paths) or ["."], resolver, warn=warn, force_exclude=force_exclude):
        click.echo(native_path(display))


def read_stdin_target(paths, stdin_filename):
    """(is_stdin, display name) for `scan -` / `--stdin-filename`."""
    if list(paths) == ["-"] or (stdin_filename and not paths):
        return True, stdin_filename or "-"
    if "-" in paths:
        fail("`-` (stdin) cannot be combined with other paths")
    return False, None


class LazyGroup(click.Group):
    """Commands whose modules load only when they run (check/init need NVML and torch)."""

    lazy = {"check": ("gpufix.hardware.commands", "check_command"), "init": ("gpufix.hardware.commands", "init_command"),
            "run": ("gpufix.runtime.commands", "run_command"), "guard": ("gpufix.runtime.commands", "guard_group")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpufix")
def cli():
    """Lint and fix GPU selection in Python code: one policy GPU, set before any framework import,
    addressed as cuda:0."""


def _stdin_scan(resolver, name, options, force_exclude):
    from gpufix.engine import gather_pairs, lint_bytes
    from gpufix.session import Session

    policy = resolve(resolver, name if name != "-" else ".")
    if force_exclude and name != "-":
        from gpufix.discover import _force_excluded
        from pathlib import Path

        if _force_excluded(Path(name), policy):
            return None
    raw = sys.stdin.buffer.read()
    session = Session.of(_stdin_project(policy, name, raw, options.use_cache), options.use_prefilter)
    policy = session.policy
    res = lint_bytes(raw, os.path.abspath(name), name, policy, session.use_prefilter, session.catalog)
    result = gather_pairs(policy, [(policy, res)])
    result.sources[name] = raw  # the JSON report's fix edits are computed from this text, not the file
    return result


def _stdin_project(policy, name, raw: bytes, use_cache: bool = True):
    """The policy with the project index of the file stdin stands for (`--stdin-filename`): the
    code read from stdin takes that file's place in its project, so an editor gets what
    `gpufix scan FILE` reports."""
    from gpufix.engine import prepare_policy
    from gpufix.source import ReadError, read_source

    abs_name = os.path.abspath(name if name != "-" else "-.py")
    try:
        text = read_source(name, raw).text
    except (ReadError, ValueError):
        text = None
    overrides = {abs_name: text} if (text is not None and name != "-") else None
    return prepare_policy([name], policy, [(abs_name, name)] if name != "-" else [], use_cache, overrides=overrides)


def _show_and_exit(resolver, paths, show_settings: bool, show_files: bool, force_exclude: bool) -> None:
    """--show-settings / --show-files: print and exit 0 (as ruff)."""
    if show_settings:
        print_settings(resolver, list(paths))
        sys.exit(0)
    if show_files:
        print_files(resolver, paths, force_exclude)
        sys.exit(0)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@shared_options
@click.option("--fix", "fix", is_flag=True,
              help="Fix what can be fixed, as `gpufix apply` does (same safety: backups, git tag, refusal on "
                   "uncommitted changes), then report what is left (ruff's `check --fix`).")
@click.option("--unsafe-fixes", is_flag=True,
              help="With --fix, also apply unsafe fixes; without it, count them as fixable in the summary.")
@click.option("--allow-dirty", is_flag=True, help="With --fix: fix files that have uncommitted changes.")
@click.option("--watch", "-w", is_flag=True, help="Scan again whenever a file changes (Ctrl-C stops).")
@click.option("--add-noqa", is_flag=True,
              help="Write `# gpufix: ignore[CODE]` at the end of each finding's line (Python files; other kinds "
                   "are listed, not changed), then exit 0.")
@click.pass_context
def scan(ctx, paths, config_file, select, extend_select, ignore, visible_devices, header_scope, fmt, output, exit_zero,
         quiet, statistics, show_fixes, show_settings: bool, show_files: bool, force_exclude, stdin_filename, no_cache,
         no_prefilter, jobs, fix, unsafe_fixes, allow_dirty, watch, add_noqa):
    """Lint the Python files, notebooks and GPU settings (shell, Dockerfile, .env, YAML/JSON/TOML)
    under PATHS (default: .) and report findings; `-` reads stdin."""
    if sum((fix, watch, add_noqa)) > 1:
        fail("--fix, --watch and --add-noqa cannot be combined")
    if fix:
        # `scan --fix` is `apply` with the same options: one code path, one notion of safety
        ctx.invoke(apply, paths=paths, config_file=config_file, select=select, extend_select=extend_select,
                   ignore=ignore, visible_devices=visible_devices, header_scope=header_scope, fmt=fmt, output=output,
                   exit_zero=exit_zero, quiet=quiet, statistics=statistics, show_fixes=show_fixes,
                   show_settings=show_settings, show_files=show_files, force_exclude=force_exclude,
                   stdin_filename=stdin_filename, no_cache=no_cache, no_prefilter=no_prefilter, jobs=jobs,
                   unsafe_fixes=unsafe_fixes, allow_dirty=allow_dirty)
        return
    if allow_dirty:
        fail("--allow-dirty goes with --fix")
    resolver = make_resolver(config_file, select, extend_select, ignore, visible_devices, header_scope)
    _show_and_exit(resolver, paths, show_settings, show_files, force_exclude)
    is_stdin, name = read_stdin_target(paths, stdin_filename)
    if is_stdin and (watch or add_noqa):
        fail("--watch and --add-noqa read files, not stdin")

    def once(resolver, show_notes=True):
        return _scan_once(resolver, paths, is_stdin, name, fmt, output, quiet, statistics, show_fixes,
                          force_exclude, no_cache, no_prefilter, jobs, unsafe_fixes, show_notes=show_notes)

    if add_noqa:
        from gpufix.noqa import add_noqa as write_noqa

        result = _scan_once(resolver, paths, False, None, fmt, output, quiet, statistics, show_fixes, force_exclude,
                            True, no_prefilter, jobs, unsafe_fixes, render_report=False)
        added, files, skipped = write_noqa(result)
        for line in skipped:
            warn(line)
        click.echo(f"Added {added} `# gpufix: ignore` comment(s) in {files} file(s).")
        sys.exit(0)
    if watch:
        _watch(lambda first: once(make_resolver(config_file, select, extend_select, ignore, visible_devices,
                                                header_scope) if not first else resolver, show_notes=first),
               paths, quiet, skip=output)
        return
    result = once(resolver)
    if not (is_stdin or output or no_cache):
        from gpufix import snapshot

        snapshot.mark_replayable()  # a plain scan: replayed next time if nothing it read changed
    if exit_zero:
        sys.exit(0)
    sys.exit(1 if (result.findings or result.errors) else 0)


def _scan_once(resolver, paths, is_stdin, name, fmt, output, quiet, statistics, show_fixes, force_exclude, no_cache,
               no_prefilter, jobs, unsafe_fixes, render_report=True, show_notes=True):
    """One scan and its report; the result (for the exit code, --watch and --add-noqa)."""
    from gpufix.engine import Options, scan as run_scan
    from gpufix.report import render

    options = Options(use_prefilter=not no_prefilter, use_cache=not no_cache, jobs=jobs)
    if is_stdin:
        result = _stdin_scan(resolver, name, options, force_exclude)
        if result is None:
            sys.exit(0)  # excluded by the config (--force-exclude)
    else:
        primary = resolve(resolver, (list(paths) or ["."])[0])
        pf = progress_factory(quiet)
        try:
            result = run_scan(list(paths) or ["."], primary, options, progress_factory=pf, resolver=resolver,
                              force_exclude=force_exclude)
        except Exception as exc:
            from gpufix.config import ConfigError

            if isinstance(exc, ConfigError):
                fail(str(exc))
            raise
    if show_notes:
        no_policy_notice(resolver, quiet)
    if not quiet:
        for w in result.warnings:
            warn(w)
    if not render_report:
        return result
    with report_stream(output) as stream:
        if statistics:
            from gpufix.report.formats import render_statistics

            render_statistics(result, stream, fmt)
        else:
            # code read from stdin is not on disk: no source lines under its findings
            render(result, fmt, stream, color=color_for(stream), show_fixes=show_fixes, show_source=not is_stdin,
                   unsafe_fixes=unsafe_fixes)
    return result


WATCH_INTERVAL = 0.5


def _watch(run_once, paths, quiet, skip=None) -> None:
    """`scan --watch`: a scan, then another one each time a file under PATHS changes (stat
    polling: no dependency, works on every file system). A change is a file's size or mtime, a
    file added or removed; the files the first scan read are what is watched, plus new ones."""
    import time

    skip = os.path.abspath(skip) if skip else None  # the report file itself (-o) is no change

    def stamp():
        out = {}
        for top in (list(paths) or ["."]):
            for root, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("__pycache__", "node_modules")]
                for fname in files:
                    p = os.path.join(root, fname)
                    if skip and os.path.abspath(p) == skip:
                        continue
                    try:
                        st = os.stat(p)
                    except OSError:
                        continue
                    out[p] = (st.st_mtime_ns, st.st_size)
            if os.path.isfile(top):
                try:
                    st = os.stat(top)
                    out[top] = (st.st_mtime_ns, st.st_size)
                except OSError:
                    pass
        return out

    first = True
    while True:
        before = stamp()
        if not first:
            click.echo("")
        try:
            run_once(first)
        except SystemExit as exc:
            if first or exc.code not in (0, 1, 2):
                raise
            # a config made invalid while watching: its error is printed; wait for the next change
        if not quiet:
            click.echo("gpufix: watching for changes (Ctrl-C stops)", err=True)
        sys.stdout.flush()
        first = False
        while True:
            time.sleep(WATCH_INTERVAL)
            now = stamp()
            if now != before:
                break


def stdin_fixed_bytes(policy, name: str, raw: bytes, unsafe: bool) -> bytes:
    """What `apply - --stdin-filename NAME` prints for `raw`: the file fixed in its place in the
    project (a fix that needs another file's fix is held, as `gpufix apply NAME` holds it).
    Raises ReadError / FixError."""
    import dataclasses

    from gpufix.fix.passes import fix_source
    from gpufix.engine import dependent_holds, lint_source
    from gpufix.project import apply_holds
    from gpufix.session import Session
    from gpufix.source import read_source

    src = read_source(name, raw)
    session = Session.of(_stdin_project(policy, name, raw))
    policy = session.policy
    abs_name = os.path.abspath(name)
    first = lint_source(src, policy, session.catalog, session.enabled, abs_path=abs_name)
    hold = dependent_holds([(policy, first)], unsafe).get(abs_name) if name != "-" else None
    if hold is not None:
        first = dataclasses.replace(first, findings=apply_holds(first.findings, hold))
    return fix_source(src, policy, unsafe, abs_path=abs_name, first=first, hold=hold, session=session)[0]


def _stdin_apply(resolver, name, unsafe, diff, force_exclude):
    """`apply -`: the fixed code on stdout (or its diff), as `ruff check --fix -` does."""
    from pathlib import Path

    from gpufix.fix import FixError
    from gpufix.source import ReadError

    raw = sys.stdin.buffer.read()
    policy = resolve(resolver, name if name != "-" else ".")
    if force_exclude and name != "-":
        from gpufix.discover import _force_excluded

        if _force_excluded(Path(name), policy):
            sys.stdout.buffer.write(b"" if diff else raw)
            sys.exit(0)
    try:
        new_raw = stdin_fixed_bytes(policy, name, raw, unsafe)
    except ReadError as exc:
        fail(f"{name}: {exc.error.message}", 1)
    except FixError as exc:
        fail(f"{name}: {exc}", 1)
    if diff:
        from gpufix.apply import diff_lines, diff_path, project_root, unified_diff

        before = diff_lines(raw.decode("utf-8", "replace"))
        after = diff_lines(new_raw.decode("utf-8", "replace"))

        _write_diff(sys.stdout, unified_diff(before, after, diff_path(name, project_root(policy))))
        sys.exit(1 if new_raw != raw else 0)
    sys.stdout.buffer.write(new_raw)
    sys.exit(0)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@shared_options
@click.option("--backup/--no-backup", default=True, show_default=True, help="Copy originals to .gpufix/backups/<ID>/ first.")
@click.option("--tag/--no-tag", default=True, show_default=True, help="Tag HEAD as gpufix/before-<ID> first (git only).")
@click.option("--diff", is_flag=True, help="Print a unified diff of the fixes and write nothing (exit 1 when there is one).")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply fixes marked unsafe.")
@click.option("--allow-dirty", is_flag=True, help="Fix files that have uncommitted changes.")
@click.option("--check", "run_check_after", is_flag=True, help="Run `gpufix check` after writing.")
@click.option("--exit-non-zero-on-fix", is_flag=True, help="Exit 1 when any file was changed, even if nothing is left to fix.")
@click.option("--remaining", type=click.Choice(["list", "count"]), default="list", show_default=True,
              help="Text report: list the findings left after the fixes, or only count them (the gpufix-fix "
                   "pre-commit hook: the gpufix hook lists them, so each is printed once).")
def apply(paths, config_file, select, extend_select, ignore, visible_devices, header_scope, fmt, output, exit_zero, quiet,
          statistics, show_fixes, show_settings: bool, show_files: bool, force_exclude, stdin_filename, no_cache,
          no_prefilter, jobs, backup, tag, diff, unsafe_fixes, allow_dirty, run_check_after, exit_non_zero_on_fix,
          remaining):
    """Rewrite files under PATHS to satisfy the policy (libcst), with backups and a git tag; `-`
    fixes stdin to stdout."""
    from gpufix.apply import ApplyOptions, ApplyRefused, run_apply

    resolver = make_resolver(config_file, select, extend_select, ignore, visible_devices, header_scope)
    _show_and_exit(resolver, paths, show_settings, show_files, force_exclude)
    is_stdin, name = read_stdin_target(paths, stdin_filename)
    if is_stdin:
        _stdin_apply(resolver, name, unsafe_fixes, diff, force_exclude)
    primary = resolve(resolver, (list(paths) or ["."])[0])
    opts = ApplyOptions(
        backup=backup, tag=tag, diff=diff, unsafe_fixes=unsafe_fixes, allow_dirty=allow_dirty,
        use_prefilter=not no_prefilter, jobs=jobs, quiet=quiet, force_exclude=force_exclude,
    )
    try:
        outcome = run_apply(list(paths) or ["."], primary, opts, warn=lambda m: quiet or warn(m),
                            progress_factory=progress_factory(quiet), resolver=resolver)
    except ApplyRefused as exc:
        fail(str(exc))
    no_policy_notice(resolver, quiet)
    code = outcome.exit_code
    check_doc = check_text = None
    if run_check_after and not diff:
        check_code, check_doc, check_text = _run_check(primary, fmt, quiet)
        code = code or check_code
    with report_stream(output) as stream:
        if statistics:
            from gpufix.report.formats import render_statistics

            render_statistics(outcome.remaining, stream, fmt)
        elif diff and fmt == "json":
            _json_document(stream, outcome.remaining, {"diffs": [{"path": p, "diff": d} for p, d in outcome.diffs]})
        elif diff:
            _write_diff(stream, outcome.diff_text)
        elif fmt == "json":
            extra = outcome.extra()
            if check_doc is not None:
                extra["check"] = check_doc
            _json_document(stream, outcome.remaining, extra)
        else:
            from gpufix.report import render

            render(outcome.remaining, fmt, stream, color=color_for(stream), extra=outcome.extra(), command="apply",
                   show_fixes=show_fixes, list_findings=remaining == "list")
    if check_text:
        # the check's table follows the apply report on stdout in text formats, and goes to stderr
        # where stdout holds one document (sarif, junit, ...)
        click.echo(check_text, nl=False, err=fmt in DOCUMENT_FORMATS)
    if exit_zero and code == 1:
        code = 0
    if exit_non_zero_on_fix and outcome.fixes:
        code = code or 1  # files changed: fail, as formatters do (also with --exit-zero, as in ruff)
    sys.exit(code)


def _write_diff(stream, text: str) -> None:
    """A diff's bytes exactly: on stdout through its buffer, so that a text-mode stdout (Windows)
    does not turn each `\\n` into `\\r\\n` (a patch git would then reject) or touch a CRLF file's lines."""
    if stream is sys.stdout and hasattr(sys.stdout, "buffer"):
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
        sys.stdout.buffer.flush()
    else:
        stream.write(text)


def _json_document(stream, result, extra) -> None:
    import json

    from gpufix.report import scan_document

    from gpufix.report.safe import json_text

    doc = scan_document(result)
    doc.update(extra)
    stream.write(json_text(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n")


def _run_check(policy, fmt, quiet):
    """(exit code, JSON document or None, text or None) of `gpufix check` for `apply --check`."""
    import json

    from gpufix.hardware.commands import run_check

    captured: list = []
    code = run_check(policy, fmt="json" if fmt == "json" else "text", output=None, quiet=quiet, sink=captured.append)
    text = "".join(captured)
    if fmt == "json":
        try:
            return code, json.loads(text), None
        except ValueError:
            return code, None, None
    return code, None, text


@cli.command()
@click.argument("backup_id", required=False)
@click.option("--force", is_flag=True, help="Restore files even if they changed since the apply.")
@click.option("--root", type=click.Path(file_okay=False), default=".", show_default=True, help="Project root that holds .gpufix/.")
def restore(backup_id, force, root):
    """Put back the files of a backup (default: the latest)."""
    from gpufix.backup import RestoreError, restore_backup

    try:
        report = restore_backup(root, backup_id, force=force)
    except RestoreError as exc:
        fail(str(exc), 1 if exc.partial else 2)
    for line in report:
        click.echo(line)


@cli.group(invoke_without_command=True)
@click.option("--root", type=click.Path(file_okay=False), default=".", show_default=True, help="Folder in the project that holds .gpufix/.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def backups(ctx, root, fmt):
    """List apply's backups and gpufix/before-* git tags (`backups prune` removes old ones)."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root
    if ctx.invoked_subcommand is None:
        from gpufix.backup import inventory

        items = inventory(root)
        if fmt == "json":
            import json

            click.echo(json.dumps(items, indent=2))
            return
        if not items:
            click.echo("no backups and no gpufix tags")
            return
        for it in items:
            files = f"{it['files']} file(s)" if it["backup"] else "no backup"
            tag = it["tag"] or "no tag"
            click.echo(f"{it['id']}  {it['created'] or '':<25}  {files:<12}  {tag}")


@backups.command("prune")
@click.option("--keep", type=click.IntRange(0), default=5, show_default=True, help="How many of the newest to keep.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.pass_context
def backups_prune(ctx, keep, dry_run):
    """Remove all but the newest KEEP backups and their git tags."""
    from gpufix.backup import RestoreError, prune

    try:
        lines = prune(ctx.obj["root"], keep, dry_run=dry_run)
    except RestoreError as exc:
        fail(str(exc))
    for line in lines:
        click.echo(line)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules(fmt):
    """List the rules."""
    from gpufix.catalog import load_rule_docs

    docs = load_rule_docs()
    if fmt == "json":
        import json

        click.echo(json.dumps([
            {"code": d.code, "name": d.name, "severity": d.severity, "fix": d.fix, "summary": d.summary, "default": d.default_enabled}
            for d in docs.values()
        ], indent=2))
        return
    width = max(len(d.name) for d in docs.values())
    for d in docs.values():
        click.echo(f"{d.code}  {d.name:<{width}}  {d.fix:<9}  {d.summary}")


@cli.command()
@click.argument("rule")
def explain(rule):
    """Print one rule's documentation; RULE is a code (GPU001) or a name."""
    from gpufix.catalog import load_rule_docs
    from gpufix.config import suggest

    docs = load_rule_docs()
    key = rule.strip()
    doc = docs.get(key.upper())
    if doc is None:
        by_name = {d.name: d for d in docs.values()}
        doc = by_name.get(key.lower().replace("_", "-"))
    if doc is None:
        hint = suggest(key.upper(), docs) or suggest(key.lower().replace("_", "-"), [d.name for d in docs.values()])
        fail(f"unknown rule {rule!r}{hint}; `gpufix rules` lists them")
    if sys.stdout.isatty() and not no_color():
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(doc.markdown()))
    else:
        click.echo(doc.markdown())


@cli.command()
@click.option("--stdio", is_flag=True, help="Talk over stdin/stdout (the default and only transport).")
def server(stdio):
    """Run the language server (LSP over stdio) for editors: diagnostics, quick fixes, fix all,
    suppression comments, hover. Needs the `lsp` extra: pip install "gpufix[lsp]"."""
    from gpufix.lsp import run

    sys.exit(run())


def main():
    try:
        code = cli.main(prog_name="gpufix", standalone_mode=False)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # click >= 8.2: a bare `gpufix` prints its help
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"gpufix: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"gpufix: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("gpufix: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("gpufix: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug in gpufix: say so in one line, exit 2 (GPUFIX_DEBUG=1 shows the traceback)
        if os.environ.get("GPUFIX_DEBUG"):
            raise
        click.echo(f"gpufix: internal error: {type(exc).__name__}: {exc} (set GPUFIX_DEBUG=1 for details)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
