"""`gpufix server`: a language server (LSP over stdio) with gpufix's diagnostics, quick fixes,
"fix all", suppression comments and hover. Needs the `lsp` extra (pygls, lsprotocol)."""

MISSING = ("`gpufix server` needs the language-server extra: pip install \"gpufix[lsp]\" "
           "(pygls and lsprotocol)")


def run() -> int:
    """Start the server on stdin/stdout; 2 with a one-line message when pygls is missing."""
    try:
        import lsprotocol  # noqa: F401
        import pygls  # noqa: F401
    except ImportError:
        import sys

        print(f"gpufix: error: {MISSING}", file=sys.stderr)
        return 2
    from gpufix.lsp.server import main

    main()
    return 0
