"""report.html in a real browser: Debian's headless Chromium loads it from disk over the DevTools protocol.

Checks what only a browser can: the page runs without console errors, asks the network for nothing, its
plots are laid out with every mark (the page's own self-check, and counts read here), measured and
predicted points are drawn differently, and hovering a point highlights its table row. A screenshot of each
page is kept in the test's tmp folder (its path is printed). Chromium comes from scripts/test-deps.sh; if
it is missing or cannot start, the test fails and says so.
"""

from __future__ import annotations

import json

import optuna
import pytest

from devicefit.search._report import build_report_data, write_report
from tests.support.chromium import Chromium
from tests.support.toy_runs import copy_study_with, predicted_npu_record, run_toy, toy_task

COUNTS = """JSON.stringify({
  selfcheck: document.body.dataset.selfcheck,
  plots: document.querySelectorAll('svg[data-plot]').length,
  measured: document.querySelectorAll('svg.plot .mark.measured').length,
  predicted: document.querySelectorAll('svg.plot .mark.predicted').length,
  laidOut: Array.from(document.querySelectorAll('svg[data-plot]')).every(s => s.getBoundingClientRect().width > 100),
  rows: document.querySelectorAll('table.members tbody tr').length
})"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory, paddle, toy_encoder_factory):
    """Two real reports: a toy run measured on one device, and the same records with a predicted NPU."""
    folder = tmp_path_factory.mktemp("browser")
    out = folder / "run"
    run_toy(toy_task(paddle, toy_encoder_factory), out, trials=6)
    url = f"sqlite:///{folder / 'mixed.db'}"
    mixed = copy_study_with(f"sqlite:///{out / 'study.db'}", url, "mixed", ["host-x86", "kirin-npu"], predicted_npu_record)
    measured = build_report_data(optuna.load_study(study_name="devicefit", storage=f"sqlite:///{out / 'study.db'}"))
    mixed_data = build_report_data(mixed, storage=url)
    return {
        "measured": (write_report(measured, folder / "measured.html"), measured),
        "mixed": (write_report(mixed_data, folder / "mixed.html"), mixed_data),
    }


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with Chromium(tmp_path_factory.mktemp("chromium-profile")) as chromium:
        yield chromium


@pytest.mark.parametrize("name", ["measured", "mixed"])
def test_report_renders_in_chromium_without_errors(browser, reports, name, tmp_path) -> None:
    path, data = reports[name]
    page = browser.open(path.as_uri())
    try:
        counts = json.loads(page.evaluate(COUNTS))
        assert page.errors() == []
        assert page.requested_urls() == [path.as_uri()]  # nothing from the network, not even a font
        assert counts["selfcheck"] == "ok", counts["selfcheck"]
        assert counts["plots"] == len(data.fronts) + 1 + len(data.breakdowns)  # fronts, hypervolume, kernels
        assert counts["laidOut"]
        predicted = sum(1 for f in data.fronts for p in f.points if p.provenance.startswith("predicted"))
        assert counts["predicted"] == predicted
        assert counts["measured"] == sum(len(f.points) for f in data.fronts) - predicted
        assert counts["rows"] == len(data.members)
        shot = page.screenshot(tmp_path / f"report-{name}.png")
        assert shot.stat().st_size > 20_000
        print(f"screenshot: {shot}")
        key = data.members[0].key
        highlighted = page.evaluate(
            f"(function () {{ var mark = document.querySelector('svg.plot .mark[data-key=\"{key}\"]');"
            "mark.dispatchEvent(new MouseEvent('mouseenter'));"
            f"return document.querySelector('tr[data-key=\"{key}\"]').classList.contains('hl'); }})()"
        )
        assert highlighted is True
    finally:
        page.close()


def test_the_self_check_reports_a_plot_that_lost_marks(browser, reports, tmp_path) -> None:
    path, data = reports["measured"]
    broken = tmp_path / "broken.html"
    marks = len(data.fronts[0].points)
    broken.write_text(path.read_text().replace(f'data-marks="{marks}"', f'data-marks="{marks + 1}"', 1))
    page = browser.open(broken.as_uri())
    try:
        verdict = page.evaluate("document.body.dataset.selfcheck")
        assert verdict == f"fail: front-0 draws {marks} marks, expected {marks + 1}"
    finally:
        page.close()
