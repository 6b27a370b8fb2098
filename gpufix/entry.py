"""The `gpufix` command: a scan whose inputs did not change is replayed from its run snapshot
(gpufix.snapshot) before the CLI and the engine are imported; any other run goes to gpufix.cli,
a scan recording what it looks at for the next run."""

import sys


def main() -> None:
    argv = sys.argv[1:]
    recorder = None
    if argv[:1] == ["scan"]:
        from gpufix import snapshot

        code = snapshot.replay(argv)
        if code is not None:
            sys.exit(code)
        recorder = snapshot.begin(argv)
    from gpufix.cli import main as cli_main

    try:
        cli_main()
    except SystemExit as done:
        if recorder is not None:
            recorder.finish(done.code if done.code is not None else 0)
        raise
