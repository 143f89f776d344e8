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
