"""Open a page in headless Chromium (Debian's package) and report what a reader would see.

A copy of the page gets a probe script at the top of its ``<head>``: it records every error
(``window.onerror``, unhandled rejections, ``console.error``), and once the page has loaded it
counts the images that loaded, clicks the first numeric column's header of a sortable table and
checks that the rows came out in order; then writes all that as JSON into the DOM, which
``--dump-dom`` prints. Chromium's own console log (``--enable-logging=stderr``) is read too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome")
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e)));
window.addEventListener("unhandledrejection", e => window.__errors.push(String(e.reason)));
const __error = console.error;
console.error = (...a) => { window.__errors.push(a.join(" ")); __error(...a); };
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  let sorted = null;
  for (const table of document.querySelectorAll("table.sortable")) {
    const body = table.tBodies[0];
    if (body.rows.length < 3) continue;
    const col = Array.from(body.rows[0].cells).findIndex(
      (c, j) => c.dataset.v !== undefined &&
        new Set(Array.from(body.rows).map(r => r.cells[j].dataset.v)).size > 2);
    if (col < 0) continue;
    table.tHead.rows[0].cells[col].click();
    const values = Array.from(body.rows).map(r => parseFloat(r.cells[col].dataset.v))
      .filter(v => !isNaN(v));
    sorted = values.every((v, i) => i === 0 || values[i - 1] <= v);
    break;
  }
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images: images.length, loaded, sorted,
                                    errors: window.__errors, title: document.title,
                                    headings: document.querySelectorAll("h1, h2").length});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    """The browser's path; skips the test (fails it under CI=true) where there is none."""
    for name in NAMES:
        if path := shutil.which(name):
            return path
    reason = "no chromium on PATH (Debian: apt-get install chromium; scripts/browser.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def open_page(page: Path, tmp_path: Path) -> tuple[dict, str]:
    """(what the probe found, Chromium's console log) for ``page``."""
    browser = chromium()
    text = page.read_text()
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the page did not finish loading; chromium said:\n{result.stderr[-3000:]}"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")
                       .replace("&lt;", "<").replace("&gt;", ">"))
    console = "\n".join(line for line in result.stderr.splitlines() if "CONSOLE" in line)
    return probe, console


def screenshot(page: Path, png: Path, width: int = 1300, height: int = 2400) -> Path:
    """A PNG of the page's top (for a person to look at)."""
    browser = chromium()
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return png
