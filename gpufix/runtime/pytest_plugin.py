"""The pytest plugin (entry point `pytest11: gpufix`): pins a test session to the policy's GPU
before pytest imports any conftest or test module, when the policy asks for it with
`pytest-guard = true`.

It runs in `pytest_load_initial_conftests` ahead of pytest's own implementation (which imports the
initial conftests), so a session started from an IDE, from `python -m pytest` or by pytest-xdist
(its workers inherit the environment) is pinned without a conftest header. The policy is the one
that applies to the first path argument that exists, else to the invocation folder. Without
`pytest-guard = true` it does nothing (no policy is validated: a project that does not use gpufix
is never slowed or broken by it). `-p no:gpufix` turns it off for one run.
"""

from __future__ import annotations

import os
import sys

import pytest

# Names whose import before the mask defeats it (the API catalogue's frameworks, top level).
_FRAMEWORKS = ("torch", "tensorflow", "jax", "cupy", "numba", "pycuda", "onnxruntime", "ctranslate2",
               "faster_whisper", "whisper", "transformers", "accelerate", "lightning", "pytorch_lightning")

_STATE = pytest.StashKey()


def _start(early_config) -> str:
    base = str(early_config.invocation_params.dir)
    for arg in getattr(early_config.known_args_namespace, "file_or_dir", None) or ():
        path = os.path.join(base, str(arg).split("::", 1)[0])
        if os.path.exists(path):
            return path
    return base


def _asks_for_guard(config_path) -> bool:
    """Whether the config file sets `pytest-guard = true`, read without validating the rest."""
    from gpufix.config import _load_toml

    data = _load_toml(config_path)
    if config_path.name == "pyproject.toml" or (set(data) == {"tool"} and isinstance(data.get("tool"), dict)):
        data = (data.get("tool") or {}).get("gpufix") or {}
    return isinstance(data, dict) and data.get("pytest-guard") is True


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    from pathlib import Path

    from gpufix.config import ConfigError, find_config, read_config_file

    try:
        found = find_config(Path(_start(early_config)))
        asked = found is not None and _asks_for_guard(found)
    except ConfigError as exc:
        # a config file that cannot be read may or may not ask for the guard: say so, never fail
        # the session of a project that may not use gpufix at all
        early_config.issue_config_time_warning(
            pytest.PytestConfigWarning(f"gpufix pytest guard: not pinned: {exc}"), stacklevel=2)
        return
    if not asked:
        return
    try:
        policy = read_config_file(found)
    except ConfigError as exc:
        raise pytest.UsageError(f"gpufix pytest guard: {exc}") from None
    if policy is None or policy.visible_devices is None:
        raise pytest.UsageError(f"gpufix pytest guard: {found}: pytest-guard = true needs visible-devices")
    from gpufix.runtime.pin import describe, pin

    early = [name for name in _FRAMEWORKS if name in sys.modules]
    replaced = pin(os.environ, policy.visible_devices, policy.device_order, policy.cpu_runs, policy.guard_mode)
    state = {"policy": policy, "replaced": replaced, "early": early}
    early_config.stash[_STATE] = state
    if replaced:
        sys.stderr.write(f"gpufix pytest guard: {describe(replaced)} (the policy of {policy.source})\n")


def pytest_report_header(config):
    state = config.stash.get(_STATE, None)
    if state is None:
        return None
    p = state["policy"]
    lines = [f"gpufix pytest guard: CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} "
             f"CUDA_DEVICE_ORDER={os.environ.get('CUDA_DEVICE_ORDER')} ({p.guard_mode}, from {p.source})"]
    if state["replaced"]:
        from gpufix.runtime.pin import describe

        lines.append(f"gpufix pytest guard: {describe(state['replaced'])}")
    if state["early"]:
        lines.append(f"gpufix pytest guard: warning: {', '.join(state['early'])} was imported before the guard "
                     "ran (by another plugin or a -p option): it may have read the old mask")
    return lines

