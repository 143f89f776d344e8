"""Property-based fuzzing of :func:`procalign.data.load`, feature files and video decoding.

Readers: every registered reader gets its own valid tiny layout (tests/data/fixtures_readers.py),
then 1-3 random corruptions: a file emptied, truncated, replaced by garbage bytes, re-encoded
(UTF-16, Latin-1 bytes), deleted, turned into a folder, a column dropped, junk or duplicate lines
added, a .npy replaced by one of another rank / dtype / with NaN, or truncated. ``load`` must
return a Dataset or raise one of the library's named errors (ValueError and subclasses,
TypeError, FileNotFoundError, KeyError). The ``folder`` layout is also read through
``load_featureset`` + ``FeatureSet.validate`` (the path every training run takes).

Videos: a tiny valid mp4 / avi / webm is rendered once, then corrupted (zero bytes, truncated,
bytes flipped, header cut, wrong extension, another container's bytes); ``read_video`` must
decode it or raise :class:`~procalign.data.video.VideoDecodeError`.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from procalign import data
from procalign.data.features import load_features
from procalign.data.featureset import DataConfig, load_featureset
from tests.data.fixtures_readers import WRITERS
from tests.fuzz._guard import FUZZ, PER_READER, record, time_limit

NAMED = (ValueError, TypeError, FileNotFoundError, KeyError)
MUTATIONS = [
    "empty", "truncate", "garbage", "utf16", "latin1", "delete", "to_dir",
    "drop_column", "junk_lines", "dup_lines", "npy_other", "npy_truncate",
]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _npy_other(rng: np.random.Generator) -> np.ndarray:
    kind = int(rng.integers(0, 7))
    if kind == 0:
        return np.array(3.0)  # 0-d
    if kind == 1:
        return rng.standard_normal((2, 3, 4)).astype(np.float32)  # 3-D
    if kind == 2:
        return np.zeros((0, 3), np.float32)  # no frames
    if kind == 3:
        a = rng.standard_normal((4, 3)).astype(np.float32)
        a[1, 2] = np.nan
        return a
    if kind == 4:
        return (rng.standard_normal((4, 3)) + 1j).astype(np.complex64)
    if kind == 5:
        return np.array(["a", "b"])
    return rng.integers(0, 5, (4, 7)).astype(np.int16)  # another D, int dtype


def mutate(root: Path, how: str, pick: int, seed: int) -> str:
    """Apply one corruption to one file under root; return a description."""
    files = _files(root)
    if not files:
        return "nothing to corrupt"
    f = files[pick % len(files)]
    rng = np.random.default_rng(seed)
    raw = f.read_bytes()
    if how == "empty":
        f.write_bytes(b"")
    elif how == "truncate":
        f.write_bytes(raw[: int(rng.integers(0, max(1, len(raw))))])
    elif how == "garbage":
        f.write_bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes())
    elif how == "utf16":
        f.write_bytes(raw.decode("utf-8", "replace").encode("utf-16"))
    elif how == "latin1":
        f.write_bytes(b"\xff\xfe\xe9 caf\xe9\n" + raw)
    elif how == "delete":
        f.unlink()
    elif how == "to_dir":
        f.unlink()
        f.mkdir()
    elif how == "drop_column":
        lines = raw.decode("utf-8", "replace").splitlines()
        out = []
        for line in lines:
            sep = "," if "," in line else " "
            out.append(sep.join(line.split(sep)[1:]))
        f.write_text("\n".join(out), encoding="utf-8")
    elif how == "junk_lines":
        junk = ["", ",,,,", "\x00\x01", "a b c d e f g h", "-1 -1", "1e999", "nan,nan", '"unclosed']
        extra = "\n".join(rng.choice(junk, int(rng.integers(1, 4))))
        f.write_bytes(raw + b"\n" + extra.encode())
    elif how == "dup_lines":
        lines = raw.splitlines()
        f.write_bytes(b"\n".join(lines + lines[-2:]))
    elif how == "npy_other":
        f = f.with_suffix(".npy") if f.suffix != ".npy" else f
        np.save(f, _npy_other(rng), allow_pickle=False)
    elif how == "npy_truncate" and f.suffix == ".npy":
        f.write_bytes(raw[: int(rng.integers(0, max(1, len(raw))))])
    return f"{how} {f.relative_to(root)}"


def check_named(entry: str, fn, *args, **kwargs):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with time_limit(entry):
                out = fn(*args, **kwargs)
    except NAMED as exc:
        assert str(exc), f"{entry}: empty error message ({type(exc).__name__})"
        record(entry, "rejected")
        return None
    record(entry, "ok")
    return out


corruptions = st.lists(
    st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 10**6), st.integers(0, 10**6)),
    min_size=1,
    max_size=3,
)


@pytest.mark.parametrize("name", sorted(WRITERS))
@PER_READER
@given(steps=corruptions)
def test_fuzz_load(name, steps):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        if name != "folder":
            root.mkdir()
        WRITERS[name](root)
        for how, pick, seed in steps:
            mutate(root, how, pick, seed)
        ds = check_named(f"data.load[{name}]", data.load, name, root)
        if ds is not None:
            assert all(isinstance(r.video_id, str) and r.video_id for r in ds.records)


@FUZZ
@given(steps=corruptions)
# found by fuzzing: a features/<id>.npy that is a folder crashed np.load with IsADirectoryError
@example(steps=[("to_dir", 0, 0)])
def test_fuzz_folder_featureset(steps):
    with tempfile.TemporaryDirectory() as tmp:
        root = WRITERS["folder"](Path(tmp) / "ds")
        feats = root / "features"
        np.save(feats / "v3.npy", np.ones((2, 3), np.float32))  # every train/test video has features
        for how, pick, seed in steps:
            target = feats if feats.is_dir() and pick % 2 else root
            mutate(target, how, pick // 2, seed)
        cfg = DataConfig(dataset="folder", root=str(root), features_dir=str(feats))

        def load_and_validate():
            fs = load_featureset(cfg)
            fs.validate()
            return fs

        check_named("load_featureset[folder]+validate", load_and_validate)


@FUZZ
@given(how=st.sampled_from(["empty", "truncate", "garbage", "npy_other", "npy_truncate", "to_dir"]),
       seed=st.integers(0, 10**6))
# found by fuzzing: a zero-byte .npy crashed with EOFError, a garbage one with UnpicklingError
@example(how="empty", seed=0)
@example(how="garbage", seed=0)
def test_fuzz_load_features(how, seed):
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "v.npy"
        np.save(f, np.random.default_rng(seed).standard_normal((5, 3)).astype(np.float32))
        mutate(Path(tmp), how, 0, seed)
        out = check_named("load_features", load_features, f)
        if out is not None:
            assert out.ndim == 2


# ----------------------------------------------------------------------------------------------
# video decoding
# ----------------------------------------------------------------------------------------------

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from procalign.data.render import render_video

    d = tmp_path_factory.mktemp("videos")
    steps = np.repeat(np.arange(3), 4)
    progress = np.tile(np.linspace(0, 1, 4), 3)
    return {ext: render_video(d / f"v{ext}", steps, progress, size=16) for ext in (".mp4", ".avi", ".webm")}


VIDEO_MUTATIONS = ["none", "empty", "truncate", "flip_bytes", "cut_header", "wrong_ext",
                   "other_container", "garbage", "zeros_tail", "to_dir_empty"]


@FUZZ
@given(ext=st.sampled_from([".mp4", ".avi", ".webm"]), how=st.sampled_from(VIDEO_MUTATIONS),
       seed=st.integers(0, 10**6), allow_truncated=st.booleans())
# found by fuzzing: flipped bytes made PyAV raise UnicodeDecodeError (its message), not VideoDecodeError
@example(ext=".mp4", how="flip_bytes", seed=999999, allow_truncated=False)
def test_fuzz_read_video(videos, ext, how, seed, allow_truncated):
    from procalign.data.sampling import SamplingPolicy
    from procalign.data.video import ResizePolicy, VideoDecodeError, read_video

    rng = np.random.default_rng(seed)
    raw = videos[ext].read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        out_ext = ext
        if how == "empty":
            raw = b""
        elif how == "truncate":
            raw = raw[: int(rng.integers(0, len(raw)))]
        elif how == "flip_bytes":
            b = bytearray(raw)
            for i in rng.integers(0, len(b), int(rng.integers(1, 64))):
                b[i] ^= 0xFF
            raw = bytes(b)
        elif how == "cut_header":
            raw = raw[int(rng.integers(1, min(len(raw), 400))):]
        elif how == "wrong_ext":
            out_ext = str(rng.choice([".mp4", ".avi", ".webm", ".mkv", ".txt"]))
        elif how == "other_container":
            raw = videos[str(rng.choice([".mp4", ".avi", ".webm"]))].read_bytes()
        elif how == "garbage":
            raw = rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
        elif how == "zeros_tail":
            cut = int(rng.integers(len(raw) // 2, len(raw)))
            raw = raw[:cut] + bytes(len(raw) - cut)
        path = Path(tmp) / f"x{out_ext}"
        if how == "to_dir_empty":
            path.mkdir()
        else:
            path.write_bytes(raw)
        T = int(rng.integers(1, 20))
        try:
            with time_limit("read_video"):
                v = read_video(path, SamplingPolicy(num_frames=T), ResizePolicy(), rng=seed,
                               allow_truncated=allow_truncated)
        except VideoDecodeError as exc:
            assert str(exc) and str(path.name) in str(exc), exc
            record("read_video", "rejected")
            return
        assert v.frames.dtype == np.uint8 and v.frames.shape[1] == T, v.frames.shape
        record("read_video", "ok")
