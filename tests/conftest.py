import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
WINDOWS = sys.platform == "win32"
# A test that needs what only POSIX systems have (fork, process groups, `select` on pipes, file
# modes, FIFOs, symlinks without privileges, /dev/null): `@POSIX_ONLY`, skipped on Windows (the
# `posix_only` marker is registered in pyproject.toml; `pytest -m "not posix_only"` on Linux runs
# what a Windows runner runs).
POSIX_ONLY = pytest.mark.posix_only


# A nested `python -m pytest` run of a test's own small suite: without the runner's other plugins
# (hypothesis, pytest-asyncio, pytest-lsp), which are not what it tests and cost seconds to import.
NESTED_PYTEST = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:hypothesispytest", "-p", "no:pytest-lsp")


def native(path: str) -> str:
    """A `/` path as gpufix's human formats and --show-files print it on this platform."""
    return path.replace("/", "\\") if WINDOWS else path


def pytest_collection_modifyitems(config, items):
    if not WINDOWS:
        return
    skip = pytest.mark.skip(reason="POSIX only (fork, process groups, file modes, FIFOs or symlinks)")
    for item in items:
        if "posix_only" in item.keywords:
            item.add_marker(skip)


def run_gpufix(*args, cwd=None, env=None, input=None, timeout=300):
    """Run the real CLI (`python -m gpufix`) in a subprocess; return CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.pop("GPUFIX_PROBE", None)
    full_env["NO_COLOR"] = "1"
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "gpufix", *map(str, args)],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, input=input,
    )


def gpufix_in_process(*args, cwd, input=None):
    """The CLI run in this process (click's runner, in `cwd`): what run_gpufix gives, without an
    interpreter start per call. For tests that run it many times on one project (a subprocess
    start is most of a small run); keep run_gpufix for what depends on a fresh process."""
    import subprocess as _sp

    from click.testing import CliRunner

    from gpufix.cli import cli

    old = os.getcwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(cli, list(map(str, args)), input=input, env={"NO_COLOR": "1"}, catch_exceptions=False)
    finally:
        os.chdir(old)
    return _sp.CompletedProcess(["gpufix", *map(str, args)], res.exit_code, res.stdout, res.stderr)


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def init_git_repo(path: Path) -> Path:
    git(path, "init", "-q")
    git(path, "config", "user.email", "test@example.com")
    git(path, "config", "user.name", "gpufix tests")
    git(path, "config", "commit.gpgsign", "false")
    git(path, "config", "tag.gpgsign", "false")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial", "--allow-empty")
    return path


@pytest.fixture
def gitrepo(tmp_path):
    """A factory: copy files {relpath: text|bytes} into a fresh git repo and commit them."""

    def make(files: dict, commit=True) -> Path:
        repo = tmp_path / "repo"
        repo.mkdir(exist_ok=True)
        for rel, content in files.items():
            p = repo / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content, encoding="utf-8")
        if commit:
            init_git_repo(repo)
        return repo

    return make


def snapshot(root: Path) -> dict:
    """{relative path: bytes} of every file outside .git and .gpufix."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith((".git/", ".gpufix/")):
            out[rel] = p.read_bytes()
    return out


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_cache(tmp_path_factory):
    """gpufix keeps its cache-signing key and no-project caches in the user cache folder: give the
    test session its own (inherited by every subprocess) instead of the real ~/.cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(autouse=True, scope="session")
def _no_user_config():
    """The machine's own user config (~/.config/gpufix/gpufix.toml) must not change what the tests
    see: none, unless a test points GPUFIX_USER_CONFIG at one (gpufix.config.user_config_path)."""
    old = os.environ.get("GPUFIX_USER_CONFIG")
    os.environ["GPUFIX_USER_CONFIG"] = ""
    yield
    if old is None:
        os.environ.pop("GPUFIX_USER_CONFIG", None)
    else:
        os.environ["GPUFIX_USER_CONFIG"] = old


# ---- the real wheel, built once per session --------------------------------------------------------
BIN = "Scripts" if WINDOWS else "bin"  # where a venv keeps its programs


@pytest.fixture(scope="session")
def gpufix_wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel` builds from this checkout, built once for every test that installs it."""
    if os.environ.get("GPUFIX_SKIP_WHEEL_TEST"):
        pytest.skip("GPUFIX_SKIP_WHEEL_TEST is set")
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0:  # no hatchling in this environment: build in isolation
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(ROOT)],
                               capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    return next(dist.glob("gpufix-*.whl"))


@pytest.fixture(scope="session")
def wheel_venv(gpufix_wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel's gpufix (its modules, catalogue and entry points: the
    `gpufix` script, the pytest plugin) and no other copy of it. Its dependencies and pytest come
    from the test runner's environment through a `.pth` line (what they are is the wheel's
    metadata, checked by tests/e2e/test_wheel.py). Tests must not change it."""
    import sysconfig
    import venv

    env = tmp_path_factory.mktemp("wheel-venv") / "venv"
    venv.create(env, with_pip=False, symlinks=os.name != "nt")
    py = env / BIN / ("python.exe" if WINDOWS else "python")
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                           str(gpufix_wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    return env
