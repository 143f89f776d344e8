"""Property-based fuzzing of the command line's argument parsing (``procalign.cli.main.main``).

argv lists are built from the real verbs and options (read from the parser itself) with junk
values, junk options and real or junk files; ``procalign train cpa key=value`` gets random real
config keys (read from ``--print-config``) and junk keys with junk values. Every run must end
with exit code 0 (or 1 from ``extract``, meaning some inputs failed and were recorded), or 2 with
exactly one ``error:`` line and no traceback, within the per-example time limit.

Cases that could start real work are kept small: ``train`` always runs the tiny config of
tests/train/test_runner.py with either ``--print-config`` or one bad key, ``demo`` always gets
one bad value (its success path is tests/methods/test_cpa_demo.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from procalign.cli.main import build_parser, main
from tests.fuzz._guard import FUZZ, PER_READER, record, time_limit
from tests.train.test_runner import TINY


def _options(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict:
    """{(verb, ...): (positionals, [(option, takes_value, choices)])} for every (sub)verb."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_options(sub, (*prefix, name)))
    if prefix:
        pos = [a.dest for a in parser._actions if not a.option_strings
               and not isinstance(a, argparse._SubParsersAction) and a.nargs != "*"]
        opts = [(a.option_strings[-1], a.nargs != 0, a.choices) for a in parser._actions
                if a.option_strings and not isinstance(a, (argparse._HelpAction,))]
        out[prefix] = (pos, opts)
    return out


VERBS = {k: v for k, v in _options(build_parser()).items() if k[0] not in ("train",)}
JUNK = ["", "0", "-1", "1", "2", "3", "0.5", "nan", "inf", "-inf", "1e999", "abc", "--", "-",
        "99999999999999999999", "é", "\x7f", "a=b", "[1,2", "{a: 1}", "null", "true"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Real inputs a user might pass: good, NaN, wrong-D, 1-frame, empty and garbage files."""
    from procalign.data.render import render_video

    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    np.save(d / "good_a.npy", rng.standard_normal((12, 8)).astype(np.float32))
    np.save(d / "good_b.npy", rng.standard_normal((10, 8)).astype(np.float32))
    nan = rng.standard_normal((12, 8)).astype(np.float32)
    nan[3, 1] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "wrong_d.npy", rng.standard_normal((12, 5)).astype(np.float32))
    np.save(d / "one_frame.npy", rng.standard_normal((1, 8)).astype(np.float32))
    (d / "empty.npy").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(b"\x00\x01garbage")
    (d / "vids").mkdir()
    render_video(d / "vids" / "v1.mp4", np.repeat(np.arange(2), 3), np.tile([0.0, 0.5, 1.0], 2), size=16)
    (d / "emptydir").mkdir()
    return d


def _value(draw, files: Path, choices, positional: bool = False):
    kind = draw(st.integers(0, 5)) if not positional else draw(st.sampled_from([2, 2, 2, 2, 3]))
    if choices and kind <= 1:
        return str(draw(st.sampled_from(sorted(map(str, choices)))))
    if kind == 2:
        names = ["good_a.npy", "good_b.npy", "nan.npy", "wrong_d.npy", "one_frame.npy",
                 "empty.npy", "garbage.mp4", "vids", "emptydir", "missing.npy", "out_new"]
        return str(files / draw(st.sampled_from(names)))
    return draw(st.sampled_from(JUNK))


def check_exit(argv: list[str], entry: str, allowed=(0, 2)) -> int:
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), time_limit(entry, 60):
            rc = main(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        rc = exc.code if isinstance(exc.code, int) else 2
    text = err.getvalue()
    assert "Traceback" not in text, text
    assert rc in allowed, f"{argv}: exit {rc}\n{text}"
    if rc == 2 and "usage:" not in text.splitlines()[0:1] and text.strip():
        assert sum("error:" in line for line in text.splitlines()) == 1, f"{argv}:\n{text}"
    record(entry, f"exit {rc}")
    return rc


@pytest.mark.parametrize("verb", sorted(VERBS), ids=" ".join)
@PER_READER
@given(data=st.data())
def test_fuzz_cli_verbs(files, data, verb):
    _cli_case(files, data, verb)


def test_extract_into_a_file_is_one_line(files, tmp_path, monkeypatch):
    """Found by fuzzing: ``extract IN OUT`` with OUT an existing file crashed (FileExistsError)."""
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["extract", str(files / "vids"), str(files / "good_a.npy"), "--encoder", "tiny_cnn"])
    assert rc == 2 and "exists and is not a folder" in err.getvalue(), err.getvalue()


def _cli_case(files, data, verb):
    positionals, options = VERBS[verb]
    argv = list(verb)
    for _ in positionals:
        argv.append(_value(data.draw, files, None, positional=True))
    for opt, takes, choices in data.draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        argv.append(opt)
        if takes:
            argv.append(_value(data.draw, files, choices))
    if data.draw(st.integers(0, 4)) == 0:
        argv.insert(data.draw(st.integers(1, len(argv))), data.draw(st.sampled_from(
            ["--bogus", "-x", "key=value", "--steps=", "--help", "extra"])))
    if verb == ("demo",):
        argv += ["--epochs", "junk"]  # keep the demo in its error path
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            check_exit(argv, "procalign " + " ".join(verb), allowed=(0, 1, 2) if verb == ("extract",) else (0, 2))
        finally:
            os.chdir(cwd)


def _config_keys() -> list[str]:
    from procalign.config import load_config
    from procalign.methods import load_recipes

    cfg = load_config(load_recipes().build("cpa").config_cls, None, [])
    import dataclasses

    def walk(obj, prefix=""):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            yield prefix + f.name
            if dataclasses.is_dataclass(v):
                yield from walk(v, prefix + f.name + ".")
            elif isinstance(v, dict):
                for k in v:
                    yield f"{prefix}{f.name}.{k}"

    return sorted(set(walk(cfg)))


KEYS = _config_keys()
VALUES = JUNK + ["[cpa]", "[]", "{}", "{dim: 8}", "adamw", "cosine", "sampled", "csm", "0.001",
                 "1000000000", "-5", "yes", "~", "'quoted'", "a: b: c"]


@FUZZ
@given(
    overrides=st.lists(
        st.tuples(st.one_of(st.sampled_from(KEYS), st.sampled_from(["nope", "model.nope", "train.", ".x",
                                                                    "data..root", "", "=", "a b"])),
                  st.sampled_from(VALUES)),
        min_size=1, max_size=4),
    print_config=st.booleans(),
)
# found by fuzzing: a value that is not YAML crashed with yaml's ScannerError / ParserError /
# ReaderError and a traceback
@example(overrides=[("optim.lr", "a: b: c")], print_config=True)
@example(overrides=[("eval.distances", "[1,2")], print_config=True)
@example(overrides=[("model.steps", "\x7f")], print_config=True)
def test_fuzz_train_overrides(overrides, print_config):
    argv = ["train", "cpa", *TINY, *(f"{k}={v}" for k, v in overrides)]
    with tempfile.TemporaryDirectory() as tmp:
        argv += ["--out", str(Path(tmp) / "run"), "--quiet"]
        argv += ["--print-config"] if print_config else ["zz.not_a_key=1"]
        rc = check_exit(argv, "procalign train cpa key=value")
        if not print_config:
            assert rc == 2 and not (Path(tmp) / "run" / "model.safetensors").exists()


def test_weights_files_are_byte_deterministic(tmp_path):
    """Found by benchmarks/reliability.py: safetensors writes its metadata in a per-process random
    order, so half the kill-and-resume trials (and two fresh runs) gave different bytes."""
    import subprocess
    import sys

    code = (
        "import torch, sys; from procalign.train.checkpoint import save_weights; torch.manual_seed(0); "
        "save_weights(torch.nn.Linear(3, 2), sys.argv[1], {'task': 'v', 'method': 'cpa', 'x': '1', 'y': '2'})"
    )
    blobs = set()
    for i in range(4):
        out = tmp_path / f"w{i}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(out)], check=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        blobs.add(out.read_bytes())
    assert len(blobs) == 1
