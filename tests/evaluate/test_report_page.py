"""report.html as reviewers see it: rendered by headless Chromium (every image loads, no
horizontal scrolling at 1280 px, the metric tables are there), and a cohort section that tells
folders without a label apart from real rejections.

The browser is Debian's ``chromium`` (``.ci/run`` installs it). Where it is missing the browser
test is skipped, unless ``PIPELINE_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from pipeline.cache import NO_LABEL_REASON
from pipeline.evaluate.run import evaluate

#: A rejection with the long, unbreakable path deep exports have (an ADNI download, nested).
LONG_PATH = (
    "ADNI/002_S_0295/MPRAGE/2006-04-18_08_20_30.0/I13722/"
    "ADNI_002_S_0295_MR_MPRAGE_br_raw_20060418193713091_1_S13408_I13722.dcm" * 3
)
REJECTED = [
    {"subject_id": "002_S_0295", "session_id": "", "path": LONG_PATH, "level": "file",
     "reason": "file ends 1200 bytes before the end of its pixel data (truncated copy?)"},
    *[{"subject_id": f"other-{i:03d}", "session_id": "", "path": f"other-{i:03d}",
       "level": "subject", "reason": NO_LABEL_REASON} for i in range(3)],
]  # fmt: skip

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--virtual-time-budget=10000",  # let every image decode before the DOM is dumped
)

#: Appended to a copy of the page: measures what the browser rendered, into the DOM it dumps.
CHECKS = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const root = document.documentElement;
  const checks = {
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    viewport: root.clientWidth,
    page_width: root.scrollWidth,
    wider: [...document.querySelectorAll("body *")]
      .filter(e => e.getBoundingClientRect().right > root.clientWidth + 0.5)
      .map(e => e.tagName + ": " + e.textContent.slice(0, 60)),
    tables: [...document.querySelectorAll("table")].map(t => t.innerText),
  };
  const out = document.createElement("pre");
  out.id = "browser-checks";
  out.textContent = JSON.stringify(checks);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def report(tmp_path: Path, fakes, evaluate_cfg) -> Path:
    """report.html of a 12-subject held-out cohort, with the rejections above."""
    subjects, labels = fakes.cohort_ids((5, 4, 3))
    fakes.write_cache(tmp_path / "cache" / "held", subjects, labels, rejected=REJECTED)
    ckpt = fakes.write_checkpoint(tmp_path / "best.pt", fakes.conv_net())
    out = tmp_path / "report"
    evaluate(evaluate_cfg("data.name=held", f"checkpoint={ckpt}"), out, log=lambda _: None)
    return out / "report.html"


def visible_text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_folders_without_a_label_are_not_called_rejections(report: Path) -> None:
    text = visible_text(report.read_text(encoding="utf-8"))
    assert "1 input(s) rejected by preprocessing (1 file)." in text
    assert "3 folders without a label were not used." in text
    assert "002_S_0295" in text and "other-000" not in text  # the table lists real rejections
    cohort = json.loads((report.parent / "metrics.json").read_text(encoding="utf-8"))["cohort"]
    assert (cohort["n_rejected"], cohort["n_unlabelled"]) == (1, 3)
    assert cohort["rejected_by_level"] == {"file": 1}


def render(page: Path, tmp_path: Path) -> dict:
    """Chromium's measurements of ``page`` (see :data:`CHECKS`)."""
    browser = chromium()
    if browser is None:
        if os.environ.get("PIPELINE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed")
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECKS + "</body>"))
    profile = tmp_path / "chromium-profile"  # fresh: no state from any earlier run
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="browser-checks">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no measurements in chromium's output: {done.stderr[-2000:]}"
    return json.loads(unescape(found.group(1)))


@pytest.mark.slow
def test_report_renders_in_a_browser(report: Path, tmp_path: Path) -> None:
    checks = render(report, tmp_path)
    assert checks["images"] >= 4  # confusion matrices, ROC, reliability (+ explanations)
    assert checks["broken"] == [], f"images that did not load: {checks['broken']}"
    assert checks["viewport"] >= 1200
    assert checks["page_width"] <= checks["viewport"], (
        f"page is {checks['page_width']} px wide in a {checks['viewport']} px window; "
        f"too wide: {checks['wider'][:5]}"
    )
    tables = "\n".join(checks["tables"])
    for row in ("Balanced accuracy", "Quadratic-weighted kappa", "Expected calibration error"):
        assert row in tables, f"metrics table lacks {row!r}"
    assert "Sensitivity (recall)" in tables and "Specificity" in tables  # per-class table
    assert LONG_PATH in tables  # the rejected table, however long its paths
