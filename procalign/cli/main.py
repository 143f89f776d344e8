"""The ``procalign`` command line: thin verbs over public functions.

Every module ``procalign/cli/<verb>.py`` that defines ``register(subparsers)`` becomes a verb; it
adds its own parser and sets ``func`` to a callable taking the parsed namespace and returning an
exit code. Heavy imports (torch, matplotlib) happen inside those callables so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import procalign


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="procalign",
        description="Weakly supervised, procedure-aware video alignment.",
    )
    parser.add_argument("--version", action="version", version=f"procalign {procalign.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = importlib.import_module("procalign.cli")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"procalign.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # key=value overrides may come anywhere, also after options (train --config F a.b=1)
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*(args.overrides or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    import signal

    def _terminate(signum, frame):  # SIGTERM ends like Ctrl-C: finished work stays on disk
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        previous = None
    try:
        return int(func(args) or 0)
    except BrokenPipeError:
        # the reader went away (`procalign align a.npy b.npy | head`): stop quietly, as other
        # command-line tools do, with the shell's SIGPIPE status; nothing more can be printed
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        print(
            f"procalign {args.command}: interrupted; finished work is saved, run the same "
            "command again to continue",
            file=sys.stderr,
        )
        return 130
    except (ValueError, OSError, KeyError, TypeError) as exc:
        # User errors (and the file system's: permissions, a file where a folder belongs, a full
        # disk): one clear line, no traceback. Set PROCALIGN_DEBUG=1 to see the traceback.
        import os

        if os.environ.get("PROCALIGN_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"procalign {args.command}: error: {msg}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush raises no second error."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or already closed
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
