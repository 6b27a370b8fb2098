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

A process start is ("script", path) for `python path`, ("module", name) for `python -m name`,
("pytest", path) for `python -m pytest path` (conftest.py first, then the module's `test_*`).
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
    return files, starts
