"""The command line: maps options onto the policy and calls the pipeline. Nothing else lives here.

Imports are lazy so that `gpufix scan` on a few files (the pre-commit case) loads only what it uses.
"""

from __future__ import annotations

import contextlib
import os
import sys

import click

from gpufix import __version__

FORMATS = ("text", "json", "sarif", "github")


def _split_codes(value):
    if not value:
        return ()
    return tuple(c.strip() for c in value.split(",") if c.strip())


def _remember_file_kinds(ctx, param, value):
    if value is not None:
        ctx.meta["gpufix.file_kinds"] = value
    return value


def shared_options(fn):
    """--config/--select/--ignore/--visible-devices/--format/--output/--exit-zero/-q."""
    decorators = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Policy file (pyproject.toml or gpufix.toml)."),
        click.option("--select", default=None, help="Comma list of rule codes or prefixes to enable (e.g. GPU1)."),
        click.option("--ignore", default=None, help="Comma list of rule codes or prefixes to disable."),
        click.option("--visible-devices", default=None, help="CUDA_VISIBLE_DEVICES value to enforce (overrides the policy)."),
        click.option("--header-scope", type=click.Choice(["gpu-modules", "entrypoints", "all"]), default=None,
                     help="Which files must set the mask (overrides the policy)."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True, help="Report format."),
        click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None, help="Write the report to FILE."),
        click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings."),
        click.option("-q", "--quiet", is_flag=True, help="Print only the report (no progress or notes)."),
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
    click.echo(f"gpufix: error: {message}", err=True)
    sys.exit(code)


def load_policy_from_flags(paths, config_file, select, ignore, visible_devices, header_scope):
    from gpufix.config import ConfigError, load_policy

    ctx = click.get_current_context(silent=True)
    overrides = {
        "visible_devices": visible_devices,
        "select": _split_codes(select),
        "ignore": _split_codes(ignore),
        "header_scope": header_scope,
        "file_kinds": ctx.meta.get("gpufix.file_kinds") if ctx is not None else None,
    }
    try:
        return load_policy(paths or ["."], config_file=config_file, overrides=overrides)
    except ConfigError as exc:
        fail(str(exc))


@contextlib.contextmanager
def report_stream(output):
    if output:
        try:
            fh = open(output, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            fail(f"{output}: cannot write the report: {exc.strerror}")
        with fh:
            yield fh
    else:
        yield sys.stdout


def progress_factory(quiet: bool):
    """A rich progress bar on stderr, only for a terminal and a long enough run."""
    if quiet or not sys.stderr.isatty():
        return None

    def make(total: int):
        if total < 200:
            return None
        from gpufix.report.progress import Progress

        return Progress(total)

    def factory(total):
        bar = make(total)
        return bar

    return factory


class LazyGroup(click.Group):
    """Commands whose modules load only when they run (check/init need NVML and torch)."""

    lazy = {"check": ("gpufix.hardware.commands", "check_command"), "init": ("gpufix.hardware.commands", "init_command")}

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


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@shared_options
def scan(paths, config_file, select, ignore, visible_devices, header_scope, fmt, output, exit_zero, quiet, no_cache, no_prefilter, jobs):
    """Lint .py and .ipynb files under PATHS (default: .) and report findings."""
    from gpufix.engine import Options, scan as run_scan
    from gpufix.report import render

    policy = load_policy_from_flags(paths, config_file, select, ignore, visible_devices, header_scope)
    options = Options(use_prefilter=not no_prefilter, use_cache=not no_cache, jobs=jobs)
    pf = progress_factory(quiet)
    result = run_scan(list(paths) or ["."], policy, options, progress_factory=(lambda n: pf(n)) if pf else None)
    if not quiet:
        for w in result.warnings:
            click.echo(f"gpufix: warning: {w}", err=True)
    with report_stream(output) as stream:
        color = stream is sys.stdout and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        render(result, fmt, stream, color=color)
    if exit_zero:
        sys.exit(0)
    sys.exit(1 if (result.findings or result.errors) else 0)


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path())
@shared_options
@click.option("--backup/--no-backup", default=True, show_default=True, help="Copy originals to .gpufix/backups/<ID>/ first.")
@click.option("--tag/--no-tag", default=True, show_default=True, help="Tag HEAD as gpufix/before-<ID> first (git only).")
@click.option("--diff", is_flag=True, help="Print a unified diff of the fixes and write nothing.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply fixes marked unsafe.")
@click.option("--allow-dirty", is_flag=True, help="Fix files that have uncommitted changes.")
@click.option("--check", "run_check_after", is_flag=True, help="Run `gpufix check` after writing.")
@click.option("--exit-non-zero-on-fix", is_flag=True, help="Exit 1 when any file was changed, even if nothing is left to fix.")
def apply(paths, config_file, select, ignore, visible_devices, header_scope, fmt, output, exit_zero, quiet, no_cache,
          no_prefilter, jobs, backup, tag, diff, unsafe_fixes, allow_dirty, run_check_after, exit_non_zero_on_fix):
    """Rewrite files under PATHS to satisfy the policy (libcst), with backups and a git tag."""
    from gpufix.apply import ApplyOptions, ApplyRefused, run_apply

    policy = load_policy_from_flags(paths, config_file, select, ignore, visible_devices, header_scope)
    opts = ApplyOptions(
        backup=backup, tag=tag, diff=diff, unsafe_fixes=unsafe_fixes, allow_dirty=allow_dirty,
        use_prefilter=not no_prefilter, jobs=jobs, quiet=quiet,
    )
    try:
        outcome = run_apply(list(paths) or ["."], policy, opts, warn=lambda m: quiet or click.echo(f"gpufix: warning: {m}", err=True),
                            progress_factory=progress_factory(quiet))
    except ApplyRefused as exc:
        fail(str(exc))
    with report_stream(output) as stream:
        if diff:
            stream.write(outcome.diff_text)
        else:
            from gpufix.report import render

            color = stream is sys.stdout and sys.stdout.isatty() and "NO_COLOR" not in os.environ
            render(outcome.remaining, fmt, stream, color=color, extra=outcome.extra(), command="apply")
    code = outcome.exit_code
    if run_check_after and not diff:
        from gpufix.hardware.commands import run_check

        check_code = run_check(policy, fmt="text", output=None, quiet=quiet)
        code = code or check_code
    if exit_zero and code == 1:
        code = 0
    if exit_non_zero_on_fix and outcome.fixes:
        code = code or 1  # files changed: fail, as formatters do (also with --exit-zero, as in ruff)
    sys.exit(code)


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
@click.argument("code")
def explain(code):
    """Print one rule's documentation."""
    from gpufix.catalog import load_rule_docs

    docs = load_rule_docs()
    doc = docs.get(code.upper())
    if doc is None:
        fail(f"unknown rule {code!r}; known: {', '.join(docs)}")
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(doc.markdown()))
    else:
        click.echo(doc.markdown())


def main():
    try:
        cli.main(prog_name="gpufix", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("gpufix: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug in gpufix: say so in one line, exit 2 (GPUFIX_DEBUG=1 shows the traceback)
        if os.environ.get("GPUFIX_DEBUG"):
            raise
        click.echo(f"gpufix: internal error: {type(exc).__name__}: {exc} (set GPUFIX_DEBUG=1 for details)", err=True)
        sys.exit(2)
