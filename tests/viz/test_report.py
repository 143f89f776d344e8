"""``procalign report``: one self-contained HTML page per run, for every method, checked in
headless Chromium (figures decode, no script errors) and for external URLs."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest

from procalign.cli.main import main
from procalign.config import load_config
from procalign.methods import METHOD_NAMES, load_recipes
from procalign.train.runner import evaluate_run, train_run
from procalign.train.threads import compute
from procalign.viz.report import build_report

from tests.methods.test_contract import TINY

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?!data:|#)|https?://|url\(\s*["']?(?!data:)""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    with compute(1):
        for name in METHOD_NAMES:
            recipe = load_recipes().build(name)
            cfg = load_config(recipe.config_cls, None, [*TINY[name], "train.epochs=2"])
            d = tmp_path_factory.mktemp(name) / "run"
            train_run(recipe, cfg, d, progress=False)
            evaluate_run(recipe, d, progress=False)
            out[name] = d
    return out


def _images(page: str) -> list[np.ndarray]:
    from PIL import Image

    found = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("L")) for b in found]


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_report_is_self_contained_with_non_blank_figures(runs, name, capsys):
    with compute(1):
        assert main(["report", str(runs[name]), "--pairs", "1", "--quiet"]) == 0
    path = runs[name] / "report.html"
    assert f"report: {path}" in capsys.readouterr().out
    page = path.read_text()
    assert not EXTERNAL.search(page), EXTERNAL.search(page).group(0)
    for heading in ("Config", "Training", "Evaluation", "Embeddings"):
        assert f"<h2>{heading}</h2>" in page, heading
    imgs = _images(page)
    assert len(imgs) == page.count("<img")
    assert len(imgs) >= 2 and all(im.std() > 5 for im in imgs)  # no blank figure
    if load_recipes().build(name).verifies_pairs:
        assert "ROC of" in page and "most confident pairs" in page
    if name == "cpa":
        assert "frame-to-step probabilities" in page


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium_without_errors(runs, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium here (.ci/run installs Debian's chromium; apt-get install chromium)")
    with compute(1):
        path = build_report(runs["cpa"], tmp_path / "cpa.html", pairs=1)
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120, check=False)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    figures = re.search(r'data-figures="(\d+)/(\d+)"', body.group(0))
    assert figures and figures.group(1) == figures.group(2) and int(figures.group(2)) >= 3, body.group(0)
    assert 'data-errors=""' in body.group(0), body.group(0)
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120, check=False)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2400, 1200) and pixels.std() > 10  # a page was drawn, not blank


@pytest.mark.parametrize("name", ["cpa", "weaksvr"])
def test_verify_html_page_for_one_pair(runs, name, tmp_path, capsys):
    recipe = load_recipes().build(name)
    from procalign.train.runner import load_run

    cfg, _, _ = load_run(recipe, runs[name])
    data = recipe.load_data(cfg, None, False)
    a, b = data.split("test")[:2]
    np.save(tmp_path / "a.npy", np.asarray(a.features))
    np.save(tmp_path / "b.npy", np.asarray(b.features))
    out = tmp_path / "pair.html"
    with compute(1):
        assert main(["verify", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--run",
                     str(runs[name]), "--html", str(out)]) == 0
    assert f"html: {out}" in capsys.readouterr().out
    page = out.read_text()
    assert not EXTERNAL.search(page)
    assert ("SAME procedure" in page) or ("DIFFERENT procedures" in page)
    assert all(im.std() > 5 for im in _images(page)) and page.count("<img") >= 1
    if name == "cpa":  # the mined steps, the most disagreeing highlighted
        assert page.count('style="background:#ffe0e0"') == min(3, cfg.model.steps)


def test_report_shows_aligned_source_frames_when_the_videos_exist(tmp_path, capsys):
    """Folder of rendered mp4s -> `procalign extract` -> CPA run on the features -> the report's
    pairs carry thumbnail strips of the matched source frames, step by step."""
    import csv

    from procalign.data.render import render_video
    from procalign.data.synthetic import make_dataset

    ds = make_dataset(num_tasks=1, procedures_per_task=2, videos_per_procedure=5, num_frames=20,
                      dim=8, steps_per_procedure=3, seed=0, test_fraction=0.4)
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    with (data / "index.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video_id", "label", "split", "steps"])
        for v in ds.videos:
            render_video(data / "videos" / f"{v.video_id}.mp4", v.step_ids, v.step_progress,
                         size=32, seed=1)
            w.writerow([v.video_id, v.record.label, v.record.split, ";".join(v.record.steps)])
    with compute(1):
        assert main(["extract", str(data), str(tmp_path / "feats"), "--encoder", "tiny_cnn",
                     "--encoder-arg", "dim=8", "--encoder-arg", "width=4", "--encoder-arg",
                     "seed=0", "--all-frames", "--size", "32", "--resize", "fixed",
                     "--no-progress"]) == 0
        recipe = load_recipes().build("cpa")
        over = [o for o in TINY["cpa"] if not o.startswith("data.synthetic")]
        cfg = load_config(recipe.config_cls, None, [
            *over, "data.dataset=folder", f"data.root={data}",
            f"data.features_dir={tmp_path / 'feats' / 'features'}", "train.epochs=1",
            "data.video_encoder=tiny_cnn", "data.video_encoder_args={dim: 8, width: 4, seed: 0}"])
        train_run(recipe, cfg, tmp_path / "run", progress=False)
        page = build_report(tmp_path / "run", pairs=1).read_text()
    assert "aligned source frames" in page
    assert all(im.std() > 5 for im in _images(page))
    # and `verify --html` on the two videos themselves
    a, b = sorted((data / "videos").glob("*.mp4"))[:2]
    with compute(1):
        assert main(["verify", str(a), str(b), "--run", str(tmp_path / "run"),
                     "--html", str(tmp_path / "pair.html")]) == 0
    assert "aligned source frames" in (tmp_path / "pair.html").read_text()
    capsys.readouterr()
