"""A grammar of small multi-file GPU projects, as people lay them out (the project oracle's input).

`random_project(rng)` returns ({relative path: text}, [process starts]). The shapes: modules in a
package (`pkg/`, with or without code in `__init__.py`), top-level modules, modules in a folder
without `__init__.py` imported by a dotted path (a namespace package); chains of modules importing
modules (at the top or inside functions); scripts with a `__main__` guard, scripts importing other
scripts, scripts in a subfolder that put the root on `sys.path`, scripts with a shebang; a
package's `__main__.py` (`python -m pkg`); a conftest.py and test modules (`python -m pytest`);
a first-party device helper (`def device_cuda(index=1)`) called across files; masks as people
write them: none, the policy's, another one (`"0,1"`), one set after the framework import, one
set in `main()`; and device calls with the ordinals 0, 1 and 2 (`set_device(N)`, `"cuda:N"`,
`torch.device("cuda", N)`).

Beyond those (`_more_starts`): console scripts (`[project.scripts]` in pyproject.toml,
`console_scripts` in setup.py or setup.cfg) whose target module is in a package or at the top;
plugins loaded by path (`importlib.util.spec_from_file_location`, `runpy.run_path`,
`exec(open(p).read())`) by a script; subprocess children (`subprocess.run([sys.executable,
"worker0.py"], env=...)`, `Popen(...).wait()`, `check_call`) with the env they get:
`{**os.environ, "CUDA_VISIBLE_DEVICES": V}`, `os.environ.copy()` then set, `dict(os.environ, ...)`,
or none (inherited); and notebooks (`.ipynb`, cells run in order, masks by `%env` or `os.environ`).

A process start is ("script", path) for `python path`, ("module", name) for `python -m name`,
("pytest", path) for `python -m pytest path` (conftest.py first, then the module's `test_*`),
("console", "mod:func") for the installed console script (`from mod import func; func()`, the
project importable from its root) and ("notebook", path) for a notebook's cells run in order by a
kernel started in its folder. A subprocess child is not a start: the oracle runs it when its parent
starts it, with the env it is given.
"""

from __future__ import annotations

import random

POLICY = "1"


def _device_call(rng, n: int, helper: bool) -> str:
    forms = [
        f"torch.cuda.set_device({n})",
        f'x = torch.zeros(1, device="cuda:{n}")',
        f'd = torch.device("cuda", {n})',
        f'm = torch.nn.Linear(2, 2).to("cuda:{n}")',
    ]
    if helper:
        forms += [f"d = device_cuda({n})", "d = device_cuda()"]
    return rng.choice(forms)


def random_project(rng: random.Random) -> tuple:
    files: dict = {}
    starts: list = []
    files["pyproject.toml"] = f'[tool.gpufix]\nvisible-devices = "{POLICY}"\ndevice-order = "PCI_BUS_ID"\n'
    n_mods = rng.randint(1, 3)
    mods = []  # (import statement at the top of an importer, call expression, relative path)
    use_pkg = rng.random() < 0.6
    init_lines = []
    helper = None
    if rng.random() < 0.3:
        # a first-party device helper, in its own module
        helper = ("from devices import device_cuda", "devices.py")
        files["devices.py"] = ("import torch\n\n\ndef device_cuda(index=1):\n"
                               "    return torch.device(f\"cuda:{index}\")\n")
    for k in range(n_mods):
        where = rng.choice(["pkg", "top", "ns"]) if use_pkg else rng.choice(["top", "ns"])
        if where == "pkg":
            rel, imp = f"pkg/mod{k}.py", f"from pkg.mod{k} import work{k}"
        elif where == "top":
            rel, imp = f"lib{k}.py", f"from lib{k} import work{k}"
        else:
            rel, imp = f"shared/lib{k}.py", f"from shared.lib{k} import work{k}"
        lines = []
        lazy = rng.random() < 0.25
        if not lazy:
            lines.append("import torch")
        if helper and rng.random() < 0.6:
            lines.append(helper[0])
        dep = rng.choice(mods) if mods and rng.random() < 0.5 else None
        if dep is not None:
            lines.append(dep[0])
        lines += ["", "", f"def work{k}():"]
        if lazy:
            lines.append("    import torch")
        for _ in range(rng.randint(1, 2)):
            lines.append("    " + _device_call(rng, rng.choice((0, 1, 1, 2)), helper is not None and helper[0] in lines))
        if dep is not None:
            lines.append(f"    {dep[1]}")
        lines.append("")
        files[rel] = "\n".join(lines)
        mods.append((imp, f"work{k}()", rel))
        if where == "pkg" and rng.random() < 0.3:
            init_lines.append(f"from .mod{k} import work{k}")
    if any(r.startswith("pkg/") for _, _, r in mods):
        files["pkg/__init__.py"] = "\n".join(init_lines) + ("\n" if init_lines else "")
        if rng.random() < 0.4:
            m = rng.choice([x for x in mods if x[2].startswith("pkg/")])
            files["pkg/__main__.py"] = f"{m[0]}\n\n{m[1]}\n"
            starts.append(("module", "pkg"))
    n_scripts = rng.randint(1, 3)
    scripts = []
    for s in range(n_scripts):
        sub = rng.random() < 0.25
        rel = f"scripts/run{s}.py" if sub else f"run{s}.py"
        used = rng.sample(mods, rng.randint(1, len(mods)))
        header = rng.choice(["none", "none", "policy", "other", "late", "in-main"])
        top = []
        if rng.random() < 0.15:
            top.append("#!/usr/bin/env python")
        if header == "policy":
            top += ["import os", 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"',
                    f'os.environ["CUDA_VISIBLE_DEVICES"] = "{POLICY}"']
        elif header == "other":
            top += ["import os", 'os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"',
                    'os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"']
        elif header in ("late", "in-main"):
            top.append("import os")
        if sub:
            top += ["import sys", "import os.path", "sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))"]
        top.append("import torch")
        if header == "late":
            top.append('os.environ["CUDA_VISIBLE_DEVICES"] = "1"')
        top += [m[0] for m in used]
        other = None
        if any("/" not in x for x in scripts) and not sub and rng.random() < 0.4:
            other = rng.choice([x for x in scripts if "/" not in x])
            top.append(f"from {other[:-3]} import main as main_{other[:-3]}")
        body = ["", "", "def main():"]
        if header == "in-main":
            body.append('    os.environ["CUDA_VISIBLE_DEVICES"] = "1"')
        for m in used:
            body.append(f"    {m[1]}")
        if rng.random() < 0.5:
            body.append("    " + _device_call(rng, rng.choice((0, 1)), False))
        if other is not None:
            body.append(f"    main_{other[:-3]}()")
        body += ["", "", 'if __name__ == "__main__":', "    main()", ""]
        files[rel] = "\n".join(top + body)
        scripts.append(rel)
        starts.append(("script", rel))
    if rng.random() < 0.3:
        m = rng.choice(mods)
        files["tests/conftest.py"] = rng.choice(["", "import torch\n"])
        files["tests/test_work.py"] = f"{m[0]}\n\n\ndef test_work():\n    {m[1]}\n"
        starts.append(("pytest", "tests/test_work.py"))
    _more_starts(rng, files, starts, mods)
    return files, starts


_MASKS = {
    "none": [],
    "policy": ['os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"', f'os.environ["CUDA_VISIBLE_DEVICES"] = "{POLICY}"'],
    "other": ['os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"', 'os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"'],
}


def _body(rng, mods: list, indent: str = "    ") -> list:
    """Calls of some of the project's modules and a device call of its own."""
    out = []
    if mods and rng.random() < 0.8:
        for m in rng.sample(mods, rng.randint(1, min(2, len(mods)))):
            out.append((m[0], indent + m[1]))
    return out


def _more_starts(rng, files: dict, starts: list, mods: list) -> None:
    """Console scripts, plugins loaded by path, subprocess children with an env, notebooks."""
    in_pkg = [m for m in mods if m[2].startswith("pkg/")]
    if rng.random() < 0.3:
        # a console script: its target module, run as the installed script runs it
        rel, mod = ("pkg/cli.py", "pkg.cli") if in_pkg and rng.random() < 0.7 else ("cli.py", "cli")
        header = rng.choice(["none", "none", "policy", "other"])
        used = _body(rng, mods)
        top = (["import os"] + _MASKS[header] if header != "none" else []) + ["import torch"]
        top += sorted({imp for imp, _ in used})
        body = ["", "", "def main():"] + [call for _, call in used]
        body.append("    " + _device_call(rng, rng.choice((0, 1)), False))
        files[rel] = "\n".join(top + body + ["    return 0", ""])
        where = rng.choice(["pyproject", "setup.py", "setup.cfg"])
        if where == "pyproject":
            files["pyproject.toml"] = (f'[project]\nname = "demo"\nversion = "0.1"\n\n[project.scripts]\n'
                                       f'demo-run = "{mod}:main"\n\n' + files["pyproject.toml"])
        elif where == "setup.py":
            files["setup.py"] = ('from setuptools import setup\n\nsetup(\n    name="demo",\n    entry_points={\n'
                                 f'        "console_scripts": ["demo-run = {mod}:main"],\n    }},\n)\n')
        else:
            files["setup.cfg"] = (f"[metadata]\nname = demo\n\n[options.entry_points]\nconsole_scripts =\n"
                                  f"    demo-run = {mod}:main\n")
        starts.append(("console", f"{mod}:main"))
    if rng.random() < 0.3:
        # plugins loaded by path by a script
        header = rng.choice(["none", "none", "policy", "other"])
        top = ["import os"] + _MASKS[header]
        if rng.random() < 0.5:
            top.append("import torch")
        body = ["", "", "def main():"]
        for k in range(rng.randint(1, 2)):
            plug = f"plugins/plug{k}.py"
            lines = ["import torch", "", "", "def register():"]
            lines.append("    " + _device_call(rng, rng.choice((0, 1, 1)), False))
            files[plug] = "\n".join(lines + [""])
            path = rng.choice([f'"{plug}"', f'os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins", "plug{k}.py")'])
            form = rng.choice(["spec", "runpy", "exec"])
            if form == "spec":
                top.append("import importlib.util")
                body += [f'    spec = importlib.util.spec_from_file_location("plug{k}", {path})',
                         "    mod = importlib.util.module_from_spec(spec)",
                         "    spec.loader.exec_module(mod)",
                         "    mod.register()"]
            elif form == "runpy":
                top.append("import runpy")
                body.append(f'    runpy.run_path({path})["register"]()')
            else:
                body += ["    ns = {}", f"    exec(open({path}).read(), ns)", '    ns["register"]()']
        files["load_plugins.py"] = "\n".join(list(dict.fromkeys(top)) + body + ["", "", 'if __name__ == "__main__":', "    main()", ""])
        starts.append(("script", "load_plugins.py"))
    if rng.random() < 0.35:
        # a parent that starts subprocess children, each with the env it is given
        header = rng.choice(["none", "none", "policy", "other"])
        top = ["import os", "import subprocess", "import sys"] + _MASKS[header]
        if rng.random() < 0.4:
            top.append("import torch")
        body = ["", "", "def main():"]
        for k in range(rng.randint(1, 2)):
            as_module = bool(in_pkg) and rng.random() < 0.3  # `python -m pkg.workerK`
            child = f"pkg/worker{k}.py" if as_module else f"worker{k}.py"
            used = _body(rng, mods)
            c_top = ["import torch"] + sorted({imp for imp, _ in used})
            c_body = ["", "", "def main():"] + [call for _, call in used]
            c_body.append("    " + _device_call(rng, rng.choice((0, 0, 1)), False))
            guard = as_module or rng.random() < 0.8  # else module-level code: a script all the same
            files[child] = "\n".join(c_top + c_body + ["", ""] + (['if __name__ == "__main__":', "    main()", ""]
                                                               if guard else ["main()", ""]))
            value = rng.choice(["0", "1", "0,1", "0,1", "", "-1"])  # "" and "-1": a CPU run
            if as_module:
                argv = f'[sys.executable, "-m", "pkg.worker{k}"]'
            else:
                argv = rng.choice([f'[sys.executable, "{child}"]',
                                   f'[sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "{child}")]'])
            env = rng.choice(["spread", "copy", "dict", "inherit"])
            if env == "spread":
                order = ', "CUDA_DEVICE_ORDER": "PCI_BUS_ID"' if rng.random() < 0.3 else ""
                body.append(f'    env = {{**os.environ, "CUDA_VISIBLE_DEVICES": "{value}"{order}}}')
            elif env == "copy":
                body += ["    env = os.environ.copy()", f'    env["CUDA_VISIBLE_DEVICES"] = "{value}"']
            elif env == "dict":
                body.append(f'    env = dict(os.environ, CUDA_VISIBLE_DEVICES="{value}")')
            kw = "" if env == "inherit" else ", env=env"
            call = rng.choice(["run", "popen", "check_call"])
            if call == "run":
                body.append(f"    subprocess.run({argv}{kw}, check=True)")
            elif call == "popen":
                body.append(f"    subprocess.Popen({argv}{kw}).wait()")
            else:
                body.append(f"    subprocess.check_call({argv}{kw})")
        files["launch.py"] = "\n".join(top + body + ["", "", 'if __name__ == "__main__":', "    main()", ""])
        starts.append(("script", "launch.py"))
    if rng.random() < 0.3:
        # a notebook: each is a process, its cells run in order
        import json

        header = rng.choice(["none", "none", "policy", "other", "magic", "magic-other"])
        cells = []
        sub = rng.random() < 0.3  # in notebooks/, the project root put on sys.path
        if header.startswith("magic"):
            value = POLICY if header == "magic" else "0,1"
            cells.append(["%env CUDA_DEVICE_ORDER=PCI_BUS_ID", f"%env CUDA_VISIBLE_DEVICES={value}"])
        elif header != "none":
            cells.append(["import os"] + _MASKS[header])
        used = _body(rng, mods, indent="")
        cells.append((['import sys', 'sys.path.insert(0, "..")'] if sub else [])
                     + ["import torch"] + sorted({imp for imp, _ in used}))
        if used:
            cells.append([call for _, call in used])
        cells.append([_device_call(rng, rng.choice((0, 1, 1)), False)])
        workers = sorted(k for k in files if k.startswith("worker") and k.endswith(".py"))
        if workers and not sub and rng.random() < 0.4:
            env = rng.choice(["", ', env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"}'])
            cells.append(["import os", "import subprocess", "import sys",
                          f'subprocess.run([sys.executable, "{workers[0]}"]{env}, check=True)'])
        nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# run"]}] + [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
             "source": [ln + "\n" for ln in c[:-1]] + [c[-1]]} for c in cells],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        rel = "notebooks/nb0.ipynb" if sub else "nb0.ipynb"
        files[rel] = json.dumps(nb, indent=1) + "\n"
        starts.append(("notebook", rel))
