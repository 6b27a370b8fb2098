"""Click commands `run` and `guard` (registered lazily by gpufix/cli.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import click

from gpufix.config import ConfigError, Policy, load_policy

EXIT_REFUSED = 3


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def _policy(config_file: Optional[str]) -> Policy:
    return load_policy(["."], config_file=config_file)


def _simulated() -> str:
    from gpufix.hardware.commands import PROBE_ENV

    spec = os.environ.get(PROBE_ENV, "").strip()
    return f" [SIMULATED: {PROBE_ENV}={spec}]" if spec.startswith("gpufix.hardware.testing:") else ""


# ---- gpufix run --------------------------------------------------------------------------------
@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
               help="Run CMD with the policy's CUDA_DEVICE_ORDER and CUDA_VISIBLE_DEVICES, after checking "
                    "through NVML (no torch) that the GPU it exposes is the expected one (expect-uuid, "
                    "expect-name, min-memory-gib). Exit: CMD's exit code; 2 config/usage error; 3 refused "
                    "(a check failed, or no NVML without --no-verify); 126/127 CMD not runnable/not found.")
@click.option("--config", "config_file", metavar="FILE", help="Read the policy from FILE (default: this folder's).")
@click.option("--no-verify", is_flag=True, help="Start CMD without the NVML check (e.g. on a machine without "
                                                "an NVIDIA driver).")
@click.option("--dry-run", is_flag=True, help="Print the environment CMD would get (NAME=VALUE lines) and the "
                                              "check's verdict; start nothing. Exit 0, or 3 (and nothing on stdout) "
                                              "if it would refuse.")
@click.option("--shell", "shell", type=click.Choice(["env", "posix", "powershell", "cmd"]), default="env",
              show_default=True, help="With --dry-run: how to print the variables: NAME=VALUE lines (env), or lines "
                                      "that set them in this shell (posix: eval \"$(gpufix run --dry-run --shell posix)\"; "
                                      "powershell: gpufix run --dry-run --shell powershell | Invoke-Expression; cmd).")
@click.option("-q", "--quiet", is_flag=True, help="No line on stderr when the check passes.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@click.pass_context
def run_command(ctx: click.Context, config_file, no_verify, dry_run, shell, quiet, command) -> None:
    from gpufix.runtime.pin import describe, pin
    from gpufix.runtime.verify import policy_problem, verify

    if not command and not dry_run:
        _err("gpufix: error: no command: gpufix run [OPTIONS] -- CMD [ARGS...]")
        ctx.exit(2)
    try:
        policy = _policy(config_file)
    except ConfigError as exc:
        _err(f"gpufix: error: {exc}")
        ctx.exit(2)
    problem = policy_problem(policy)
    if problem:
        _err(f"gpufix run: config error: {problem}")
        ctx.exit(2)
    env = dict(os.environ)
    # `gpufix run` is asked for explicitly: it always enforces the policy's mask (only an explicit CPU
    # run survives, under cpu-runs = "keep")
    replaced = pin(env, policy.visible_devices, policy.device_order, policy.cpu_runs, "enforce")
    cpu_run = env.get("CUDA_VISIBLE_DEVICES") != policy.visible_devices
    if replaced and not quiet:
        _err(f"gpufix run: {describe(replaced)} (the policy of {policy.source})")
    if cpu_run:
        verdict_text = (f"keeping this shell's CPU run (CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']!r}, "
                        "cpu-runs = \"keep\"): no GPU to verify")
        refused = None
    elif no_verify:
        verdict_text, refused = "not verified (--no-verify)", None
    else:
        from gpufix.hardware.commands import ProbeLoadError, get_probe

        try:
            verdict = verify(policy, get_probe())
        except ProbeLoadError as exc:
            _err(f"gpufix: error: {exc}")
            ctx.exit(2)
        if verdict.status == "pass":
            verdict_text, refused = verdict.detail + _simulated(), None
        else:
            refused = verdict.detail + _simulated()
            if verdict.status == "unavailable":
                refused += "; pass --no-verify to start without the check"
    if dry_run:
        if refused:  # nothing for a shell to set (eval "$(gpufix run --dry-run --shell posix)" sets nothing)
            _err(f"gpufix run: would refuse to start: {refused}")
            ctx.exit(EXIT_REFUSED)
        for name in ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES"):
            click.echo(shell_line(shell, name, env[name]))
        _err(f"gpufix run: {verdict_text}" + (f"; would start: {subprocess.list2cmdline(command)}" if command else ""))
        ctx.exit(0)
    if refused:
        _err(f"gpufix run: refused to start {command[0]}: {refused}")
        ctx.exit(EXIT_REFUSED)
    if not quiet:
        _err(f"gpufix run: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']!r} "
             f"CUDA_DEVICE_ORDER={env['CUDA_DEVICE_ORDER']}: {verdict_text}")
    ctx.exit(start(list(command), env))


def shell_line(shell: str, name: str, value: str) -> str:
    """One variable as `shell` sets it (the values are the policy's: digits, commas, UUIDs, words)."""
    if shell == "posix":
        return f"export {name}='{value}'"
    if shell == "powershell":
        return f"$env:{name} = '{value}'"
    if shell == "cmd":
        return f'set "{name}={value}"'
    return f"{name}={value}"


def start(argv: list, env: dict) -> int:
    """Replace this process with argv (POSIX exec: signals, pid and exit status are CMD's own); on
    Windows, where exec is only emulated, run it as a child and return its exit code."""
    exe = shutil.which(argv[0], path=env.get("PATH"))
    if exe is None:
        if os.path.sep in argv[0] or (os.altsep and os.altsep in argv[0]):
            how = "is not an executable file" if os.path.exists(argv[0]) else "not found"
            _err(f"gpufix run: error: {argv[0]}: {how}")
            return 126 if os.path.exists(argv[0]) else 127
        _err(f"gpufix run: error: {argv[0]}: command not found")
        return 127
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        try:
            os.execve(exe, argv, env)
        except OSError as exc:
            _err(f"gpufix run: error: cannot start {argv[0]}: {exc.strerror or exc}")
            return 126
    import signal

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child from the console
    try:
        return subprocess.call([exe, *argv[1:]], env=env)
    except OSError as exc:
        _err(f"gpufix run: error: cannot start {argv[0]}: {exc.strerror or exc}")
        return 126
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- gpufix guard ------------------------------------------------------------------------------
@click.group("guard", help="A start-up hook in a virtual environment that puts the policy's mask in force at "
                           "every start of its Python (python, subprocesses, pytest, notebooks' kernels).")
def guard_group() -> None:
    pass


_venv_option = click.option("--venv", "venv", metavar="PATH", type=click.Path(file_okay=False),
                            help="The environment (default: $VIRTUAL_ENV, else the one gpufix runs in, "
                                 "else $CONDA_PREFIX).")


def _env(venv: Optional[str]) -> Path:
    from gpufix.runtime.guard import default_env

    return Path(venv) if venv else default_env()


@guard_group.command("install", help="Write the guard into the environment's site-packages, with this folder's "
                                     "policy (or --config FILE) resolved now; reinstalling replaces it.")
@_venv_option
@click.option("--config", "config_file", metavar="FILE", help="Read the policy from FILE.")
@click.option("--mode", type=click.Choice(["enforce", "default"]), default=None,
              help="enforce: replace a caller's other mask (said once on stderr); default: only set what is "
                   "unset. Default: the policy's guard-mode (enforce).")
@click.pass_context
def guard_install(ctx: click.Context, venv, config_file, mode) -> None:
    from gpufix.runtime.guard import GuardError, install
    from gpufix.runtime.verify import policy_problem

    try:
        policy = _policy(config_file)
        problem = policy_problem(policy)
        if problem:
            raise ConfigError(problem)
        values = {"visible_devices": policy.visible_devices, "device_order": policy.device_order,
                  "cpu_runs": policy.cpu_runs, "mode": mode or policy.guard_mode}
        site, _ = install(_env(venv), values, policy.source)
    except (ConfigError, GuardError) as exc:
        _err(f"gpufix: error: {exc}")
        ctx.exit(2)
    click.echo(f"gpufix guard: installed in {site} ({values['mode']}: CUDA_VISIBLE_DEVICES="
               f"{values['visible_devices']!r}, CUDA_DEVICE_ORDER={values['device_order']}, "
               f"cpu-runs {values['cpu_runs']}; from {policy.source})")


@guard_group.command("uninstall", help="Remove every file the guard wrote from the environment.")
@_venv_option
@click.pass_context
def guard_uninstall(ctx: click.Context, venv) -> None:
    from gpufix.runtime.guard import GuardError, uninstall

    try:
        site, removed = uninstall(_env(venv))
    except GuardError as exc:
        _err(f"gpufix: error: {exc}")
        ctx.exit(2)
    if not removed:
        click.echo(f"gpufix guard: none installed in {site}")
        return
    for p in removed:
        click.echo(f"removed {p}")
    click.echo(f"gpufix guard: uninstalled from {site}")


@guard_group.command("status", help="Say whether the guard is installed in the environment, what it sets and "
                                    "whether its files are intact. Exit 0 installed and intact, 1 not.")
@_venv_option
@click.pass_context
def guard_status(ctx: click.Context, venv) -> None:
    from gpufix.runtime.guard import GuardError, status

    try:
        st = status(_env(venv))
    except GuardError as exc:
        _err(f"gpufix: error: {exc}")
        ctx.exit(2)
    site = st["site_packages"]
    if not st["installed"]:
        click.echo(f"gpufix guard: not installed in {site}")
        for f in st["files"]:
            click.echo(f"  {f['path']}: present but not recorded (an interrupted install? "
                       "gpufix guard uninstall removes it)")
        ctx.exit(1)
    rec = st["record"]
    v = rec.get("values", {})
    click.echo(f"gpufix guard: installed in {site}")
    click.echo(f"  mode {v.get('mode')}: CUDA_VISIBLE_DEVICES={v.get('visible_devices')!r}, "
               f"CUDA_DEVICE_ORDER={v.get('device_order')}, cpu-runs {v.get('cpu_runs')}")
    click.echo(f"  from {rec.get('source')}, gpufix {rec.get('gpufix_version')}, {rec.get('installed')}")
    for f in st["files"]:
        click.echo(f"  {f['path']}: {f['state']}")
    try:
        here = _policy(None)
    except ConfigError:
        here = None
    if here is not None and here.visible_devices is not None and (
            here.visible_devices, here.device_order) != (v.get("visible_devices"), v.get("device_order")):
        click.echo(f"  note: this folder's policy ({here.source}) says CUDA_VISIBLE_DEVICES="
                   f"{here.visible_devices!r}, CUDA_DEVICE_ORDER={here.device_order}: "
                   "run `gpufix guard install` again to write it")
    bad = [f for f in st["files"] if f["state"] != "ok"]
    if bad:
        click.echo("  damaged: run `gpufix guard install` again (or `gpufix guard uninstall`)")
        ctx.exit(1)
