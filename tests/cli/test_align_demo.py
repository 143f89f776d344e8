"""The align verb, its Python API, and the demo main job."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

import procalign.align
from procalign.align import align_pair
from procalign.cli.main import main


def test_align_doctests():
    assert doctest.testmod(procalign.align).failed == 0


def _two_sequences(tmp_path):
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(4, 16))
    a = np.repeat(protos, [5, 7, 4, 6], axis=0) + 0.1 * rng.normal(size=(22, 16))
    b = np.repeat(protos, [8, 3, 6, 5], axis=0) + 0.1 * rng.normal(size=(22, 16))
    pa, pb = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(pa, a.astype(np.float32))
    np.save(pb, b.astype(np.float32))
    return pa, pb


def test_align_recovers_planted_steps():
    rng = np.random.default_rng(1)
    protos = rng.normal(size=(4, 16))
    a = np.repeat(protos, [5, 7, 4, 6], axis=0) + 0.1 * rng.normal(size=(22, 16))
    b = np.repeat(protos, [8, 3, 6, 5], axis=0) + 0.1 * rng.normal(size=(22, 16))
    r = align_pair(a, b, steps=4)
    assert r.bounds_a.tolist() == [0, 5, 12, 16, 22]
    assert r.bounds_b.tolist() == [0, 8, 11, 17, 22]
    # a shuffled B aligns worse than B
    worse = align_pair(a, b[::-1].copy(), steps=4)
    assert worse.dtw_distance > r.dtw_distance


def test_align_cli_prints_writes_plot_and_json(tmp_path, capsys):
    pa, pb = _two_sequences(tmp_path)
    png, js = tmp_path / "out.png", tmp_path / "out.json"
    assert main(["align", str(pa), str(pb), "-k", "4", "--plot", str(png), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "DTW distance" in out and "soft-DTW" in out and "mined steps (K=4" in out
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(js.read_text())
    assert data["bounds_a"] == [0, 5, 12, 16, 22]


def test_align_cli_writes_no_plot_unless_asked(tmp_path, capsys, monkeypatch):
    pa, pb = _two_sequences(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["align", str(pa), str(pb), "-k", "4"]) == 0
    assert "plot:" not in capsys.readouterr().out
    assert list(work.iterdir()) == []


def test_align_cli_stops_quietly_when_the_reader_goes_away(tmp_path):
    """`procalign align a b | head -1`: the closed pipe ends the command with the SIGPIPE
    status and no error message."""
    import subprocess
    import sys

    pa, pb = _two_sequences(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "procalign", "align", str(pa), str(pb), "-k", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader exits before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Broken pipe" not in err and "Traceback" not in err, err


def test_align_cli_errors_are_clear(tmp_path, capsys):
    pa, _ = _two_sequences(tmp_path)
    assert main(["align", str(pa), str(tmp_path / "missing.npy")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not a numpy file")
    assert main(["align", str(pa), str(bad)]) == 2
    assert "not a readable .npy" in capsys.readouterr().err
    three = tmp_path / "three.npy"
    np.save(three, np.zeros((2, 3, 4)))
    assert main(["align", str(pa), str(three)]) == 2
    assert "expected shape (T, D)" in capsys.readouterr().err
    assert main(["align", str(pa), str(pa), "-k", "50", "--plot", ""]) == 2
    assert "larger than the shorter sequence" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["align", str(pa), str(text)]) == 2
    assert "a video (mp4" in capsys.readouterr().err
    assert main(["align", str(pa), str(pa), "--encoder", "tiny_cnn"]) == 2
    assert "--encoder is for video inputs" in capsys.readouterr().err


def test_align_pair_rejects_nan_and_dim_mismatch():
    with pytest.raises(ValueError, match="NaN"):
        align_pair(np.full((5, 3), np.nan), np.zeros((5, 3)), steps=2)
    with pytest.raises(ValueError, match="same feature size"):
        align_pair(np.zeros((5, 3)), np.zeros((5, 4)), steps=2)
