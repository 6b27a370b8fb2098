"""Facts about the scanned project as a whole: its first-party packages and where its processes start.

Python runs `pkg/__init__.py` before any module of `pkg`, pytest imports the rootmost `conftest.py`
before the test modules under it, and a script's header covers everything it imports. So with the
`entrypoints` header scope, the mask header is required only in the files where a process starts
(scripts, the top `__init__.py` of each first-party package, the rootmost `conftest.py` of each test
tree, notebooks), and only when that process reaches a GPU framework: directly, or through the
project's own modules (an import graph; imports inside functions count, imports under
`if TYPE_CHECKING:` or used only in annotations do not).

First-party packages (the pyproject's `[project] name`, the packages of a `src/` layout, the top-level
packages and modules of the scanned tree) are never GPU frameworks, even when the catalogue lists the
name (scanning TTS itself, `from TTS.api import TTS` is the project's own code). The policy keys
`known-first-party` and `known-gpu-frameworks` override this both ways.

The pass reads imports, the `__main__` guard and the shebang of each file, from its text
(gpufix.importscan) where the text settles them, else with `ast`; nothing is imported or run.

The package: `meta` (root, names, files) <- `imports` (one file's record) <- `graph` (the
import graph, entry points) <- `index` (the run's index, fixes safe only together)."""

from gpufix.project.graph import ProjectIndex, resolver_for  # noqa: F401
from gpufix.project.imports import (  # noqa: F401
    _has_main_guard,
    _index_file,
    _index_init,
    annotation_only_names,
    device_helpers,
    index_record,
    refine_gpu_imports,
    runtime_imports,
    runtime_imports_from_text,
    type_checking_stmt_ids,
)
from gpufix.project.index import (  # noqa: F401
    apply_holds,
    build_index,
    fix_holds,
    helper_apis,
)
from gpufix.project.meta import (  # noqa: F401
    first_party_names,
    module_name,
    project_files,
    project_root,
    run_project_root,
)
