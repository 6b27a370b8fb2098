"""Click commands `check` and `init` (registered by gpufix/cli.py) and `run_check` for `apply --check`.

The probe is `RealProbe()` unless the environment variable GPUFIX_PROBE names a factory as
"module:function" (a test double; see gpufix.hardware.testing), or a `probe` is passed in.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Optional

import click

from gpufix.config import ConfigError, Policy, load_policy, policy_from_table

PROBE_ENV = "GPUFIX_PROBE"


class ProbeLoadError(Exception):
    pass


def get_probe() -> Any:
    """The probe to use: the GPUFIX_PROBE factory ("module:function") if set, else the real one."""
    spec = os.environ.get(PROBE_ENV, "").strip()
    if not spec:
        from gpufix.hardware.probe import RealProbe

        return RealProbe()
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ProbeLoadError(f"{PROBE_ENV}={spec!r}: expected \"module:function\"")
    try:
        factory = getattr(importlib.import_module(module), attr)
        return factory()
    except Exception as exc:
        raise ProbeLoadError(f"{PROBE_ENV}={spec!r}: cannot load the probe: {type(exc).__name__}: {exc}") from None


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def _emit(text: str, output: Optional[str]) -> bool:
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            _err(f"gpufix: error: cannot write {output}: {exc.strerror or exc}")
            return False
    else:
        click.echo(text, nl=False)
    return True


def _stdout_can_draw() -> bool:
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "\u2500".encode(enc)
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def run_check(policy: Policy, fmt: str = "text", output: Optional[str] = None, quiet: bool = False,
              timeout: float = 120.0, probe: Any = None, sink=None) -> int:
    """Run the hardware check for `policy`, print the report; the exit code (0 pass, 1 fail,
    2 error, 3 unavailable). Never raises for hardware trouble."""
    from gpufix.hardware.checks import collect
    from gpufix.hardware.render import render_json, render_text

    if fmt not in ("text", "json"):
        _err(f"gpufix: error: --format {fmt!r}: allowed: text, json")
        return 2
    from gpufix.hardware.mask import mask_form_error

    problem = mask_form_error(policy.visible_devices)
    if problem:  # torch and CUDA would disagree about this mask: no check can pass it honestly
        _err(f"gpufix check: config error: {problem}")
        return 2
    try:
        if probe is None:
            probe = get_probe()
        progress = None if quiet else (lambda msg: _err(f"gpufix check: {msg}"))
        report = collect(policy, probe, timeout=timeout, progress=progress)
        from gpufix.hardware.guardinfo import guard_notes, running_guard

        report.guard = running_guard()
        report.notes.extend(guard_notes(report.guard, policy.visible_devices, policy.device_order))
        if fmt == "json":
            text = render_json(report)
        else:
            text = render_text(report, quiet=quiet, ascii_only=not output and not _stdout_can_draw())
    except ProbeLoadError as exc:
        _err(f"gpufix: error: {exc}")
        return 2
    except Exception as exc:  # an internal error is exit 2 with a message, never a traceback
        _err(f"gpufix: internal error: {type(exc).__name__}: {exc}")
        return 2
    spec = os.environ.get(PROBE_ENV, "").strip()
    if spec.startswith("gpufix.hardware.testing:"):
        # the shipped simulated workstation stands in for the GPUs: say so, in the report itself
        if fmt == "json":
            import json

            doc = json.loads(text)
            doc["simulated"] = spec
            text = json.dumps(doc, indent=2, default=str) + "\n"
        else:
            text = f"SIMULATED: the GPUs below come from {PROBE_ENV}={spec}, not from this machine\n" + text
    if sink is not None:
        sink(text)
    elif not _emit(text, output):
        return 2
    if report.status == "unavailable" and fmt == "json" and not quiet:
        _err(f"gpufix check: unavailable: {report.cause}")
    return report.exit_code


@click.command("check", help="Post-fix hardware check: NVML inventory, the policy GPU visible and big enough, "
                             "a CUDA smoke kernel in a fresh process. Exit 0 pass, 1 a check failed, "
                             "2 usage/config error, 3 unavailable (no driver, no torch, no GPU).")
@click.option("--config", "config_file", metavar="FILE", help="Read the policy from FILE.")
@click.option("--visible-devices", metavar="VALUE", help="Override the policy's visible-devices.")
@click.option("--min-memory-gib", type=click.FloatRange(min=0), default=None, help="Override the policy's min-memory-gib.")
@click.option("--expect-name", metavar="NAME", default=None, help="Override the policy's expect-name (a substring of the GPU's name).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Report format.")
@click.option("--output", metavar="FILE", help="Write the report to FILE instead of stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress; only failed checks and the status line.")
@click.option("--timeout", type=click.FloatRange(min=1.0), default=120.0, show_default=True, metavar="SECONDS",
              help="Time limit for the CUDA child process.")
@click.pass_context
def check_command(ctx: click.Context, config_file, visible_devices, min_memory_gib, expect_name, fmt, output, quiet, timeout) -> None:
    try:
        policy = load_policy(["."], config_file=config_file, overrides={"visible_devices": visible_devices})
        if min_memory_gib is not None:
            policy = dataclasses.replace(policy, min_memory_gib=float(min_memory_gib))
        if expect_name is not None:
            policy = dataclasses.replace(policy, expect_name=expect_name)
    except ConfigError as exc:
        _err(f"gpufix: error: {exc}")
        ctx.exit(2)
    ctx.exit(run_check(policy, fmt=fmt, output=output, quiet=quiet, timeout=timeout))


def run_init(path: Optional[str] = None, visible_devices: Optional[str] = None,
             min_memory_gib: Optional[float] = None, expect_name: Optional[str] = None,
             expect_uuid: Optional[str] = None, device_order: Optional[str] = None, gpu: Optional[str] = None,
             force: bool = False, quiet: bool = False, probe: Any = None) -> int:
    """Write [tool.gpufix] into `path`; the exit code (0 written, 2 refused or error)."""
    from gpufix.hardware.initcfg import (
        InitError,
        edit_pyproject,
        gpu_lines,
        memory_comment,
        select_gpu,
        values_for_gpu,
        write_atomic,
    )
    from gpufix.hardware.mask import mask_form_error
    from gpufix.hardware.model import Inventory, ProbeError, ProbeUnavailable

    flags = {"visible-devices": visible_devices, "device-order": device_order, "min-memory-gib": min_memory_gib,
             "expect-name": expect_name, "expect-uuid": expect_uuid}
    given = {k: v for k, v in flags.items() if v is not None}
    values: dict = {}
    comments: dict = {}
    how_flags = ("pass --visible-devices VALUE (an index such as \"1\" under PCI_BUS_ID order, or \"GPU-<uuid>\"), "
                 "optionally --min-memory-gib N, --expect-name NAME, --expect-uuid UUID, --device-order PCI_BUS_ID")
    try:
        if gpu is not None or not given:
            try:
                inventory = (probe or get_probe()).nvml_inventory()
            except (ProbeUnavailable, ProbeError) as exc:
                if gpu is not None:
                    raise InitError(f"--gpu needs the NVML inventory, which is unavailable: {exc}. Instead, "
                                    + how_flags) from None
                raise InitError(f"no flags given and the NVML inventory is unavailable ({exc}): " + how_flags) from None
            assert isinstance(inventory, Inventory)
            if not inventory.gpus:
                raise InitError("NVML sees no NVIDIA GPU: " + how_flags)
            if not inventory.accessible:
                raise InitError("NVML cannot open any GPU:\n" + "\n".join(gpu_lines(inventory)) + "\n" + how_flags)
            if gpu is None and len(inventory.gpus) > 1:
                raise InitError(f"NVML sees {len(inventory.gpus)} GPUs; choose the policy GPU with "
                                "--gpu NAME-SUBSTRING|UUID|PCI-BUS-ID:\n" + "\n".join(gpu_lines(inventory)))
            chosen = select_gpu(inventory, gpu) if gpu is not None else inventory.gpus[0]
            values = values_for_gpu(inventory, chosen, device_order or "PCI_BUS_ID")
            if "min-memory-gib" in values and min_memory_gib is None:
                comments["min-memory-gib"] = memory_comment(chosen)
            if not quiet:
                click.echo("GPUs (NVML):")
                click.echo("\n".join(gpu_lines(inventory, mark=chosen.nvml_index)))
                if min_memory_gib is None and "min-memory-gib" in values:
                    _err(f"gpufix init: min-memory-gib {values['min-memory-gib']}: NVML's total memory of the GPU in "
                         "whole GiB less 1 GiB, the figure gpufix check compares (pass --min-memory-gib to change)")
                elif min_memory_gib is None:
                    _err("gpufix init: NVML reports no memory size for this GPU (n/a): no min-memory-gib written "
                         "(pass --min-memory-gib to set one)")
                if (device_order or "PCI_BUS_ID") != "PCI_BUS_ID":
                    _err("gpufix init: under FASTEST_FIRST an index does not name a fixed GPU; "
                         "writing the GPU's UUID as visible-devices")
        values.update(given)
        values.setdefault("device-order", "PCI_BUS_ID")
        from gpufix.hardware.initcfg import policy_file_for

        try:
            target = Path(path) if path else policy_file_for(Path.cwd())
        except ConfigError as exc:
            raise InitError(str(exc)) from None
        try:
            policy_from_table(values, "the flags")
        except ConfigError as exc:
            raise InitError(str(exc)) from None
        problem = mask_form_error(values.get("visible-devices"))
        if problem:
            raise InitError(problem)
        if "visible-devices" not in values and not quiet:
            _err("gpufix init: warning: no --visible-devices: the table pins no GPU")
        if target.is_dir():
            raise InitError(f"{target}: is a directory; pass --path FILE")
        try:
            raw = target.read_bytes() if target.exists() else b""
        except OSError as exc:
            raise InitError(f"{target}: cannot read: {exc.strerror or exc}") from None
        new, replaced = edit_pyproject(raw, values, force, str(target), comments)
        try:
            write_atomic(target, new)
        except OSError as exc:
            raise InitError(f"{target}: cannot write: {exc.strerror or exc}") from None
    except InitError as exc:
        _err(f"gpufix: error: {exc}")
        return 2
    except ProbeLoadError as exc:
        _err(f"gpufix: error: {exc}")
        return 2
    if not quiet:
        from gpufix.hardware.initcfg import render_table

        from gpufix.discover import display_path

        keys = ", ".join(k for k in ("visible-devices", "device-order", "min-memory-gib", "expect-name", "expect-uuid") if k in values)
        where = "" if (path or target.name != "pyproject.toml") else " (the policy file for this folder)"
        _err(f"gpufix init: set {keys} in {'[tool.gpufix] of ' if target.name == 'pyproject.toml' else ''}"
             f"{display_path(target)}{where}{'; other keys kept' if replaced else ''}")
        click.echo(render_table(values, comments=comments), nl=False)
    return 0


@click.command("init", help="Write a [tool.gpufix] policy into pyproject.toml, from flags or from the GPUs NVML "
                            "sees (--gpu picks one by name substring, UUID or PCI bus id).")
@click.option("--path", "path", default=None, metavar="FILE",
              help="The file to write the policy into (created if absent). Default: the file this folder's "
                   "policy is read from, else the project's pyproject.toml.")
@click.option("--gpu", metavar="NAME-SUBSTRING|UUID|PCI-BUS-ID", help="Pin this GPU (from the NVML inventory).")
@click.option("--visible-devices", metavar="VALUE", help="CUDA_VISIBLE_DEVICES to enforce: an index such as \"1\" "
              "(PCI bus order) or \"GPU-<uuid>\".")
@click.option("--min-memory-gib", type=click.FloatRange(min=0), help="gpufix check: least memory the policy GPU must have.")
@click.option("--expect-name", metavar="NAME", help="gpufix check: a substring of the policy GPU's name.")
@click.option("--expect-uuid", metavar="UUID", help="gpufix check: the policy GPU's UUID.")
@click.option("--device-order", type=click.Choice(["PCI_BUS_ID", "FASTEST_FIRST"]), help="CUDA_DEVICE_ORDER (default PCI_BUS_ID).")
@click.option("--force", is_flag=True, help="Replace values the policy already sets (other keys are always kept).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.pass_context
def init_command(ctx: click.Context, path, gpu, visible_devices, min_memory_gib, expect_name, expect_uuid,
                 device_order, force, quiet) -> None:
    ctx.exit(run_init(path=path, visible_devices=visible_devices, min_memory_gib=min_memory_gib,
                      expect_name=expect_name, expect_uuid=expect_uuid, device_order=device_order, gpu=gpu,
                      force=force, quiet=quiet))
