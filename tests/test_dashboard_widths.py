"""Issue 15, must-show 5: the dashboard at 1400, 800 and 390 px (headless Chromium, real daemon).

At each width the sources page, the signals list, a signal's inspector (with a long dedup key)
and the refused list are measured in the page: nothing overflows the viewport or its card, no
table cell is narrower than its header's longest word (stacked tables: than their label), the
Sources URL stays readable. Full-page screenshots go to test-artifacts/inspector-width-*.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.admin_support import TOKEN, Admin, demo_config
from tests.browser_support import chromium, login, needs_chromium, shot, wait

pytestmark = needs_chromium

WIDTHS = (1400, 800, 390)

MEASURE = """
const vw = document.documentElement.clientWidth;
const problems = [];
const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
  (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '') +
  ' "' + (el.textContent || '').trim().slice(0, 30) + '"';
const shown = (el) => { const st = getComputedStyle(el); return st.display !== 'none' && st.visibility !== 'hidden'; };
const clipper = (el, stop) => {
  for (let p = el.parentElement; p && p !== stop; p = p.parentElement) {
    if (getComputedStyle(p).overflowX !== 'visible') return p;
  }
  return null;
};
if (document.documentElement.scrollWidth > vw + 1) {
  problems.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + vw);
}
for (const el of document.querySelectorAll('body *')) {
  if (!shown(el) || el.closest('dialog:not([open]), [hidden], script')) continue;
  const r = el.getBoundingClientRect();
  if (r.width === 0 && r.height === 0) continue;
  const clip = clipper(el, document.body);
  const box = clip ? clip.getBoundingClientRect() : r;
  if (box.right > vw + 0.5 || box.left < -0.5) problems.push(name(el) + ' outside the viewport: ' + box.left + '..' + box.right + ' of ' + vw);
  const card = el.closest('.card');
  if (card && card !== el) {
    const inner = clipper(el, card);
    const own = inner ? inner.getBoundingClientRect() : r;
    const c = card.getBoundingClientRect();
    if (own.right > c.right + 1 || own.left < c.left - 1) problems.push(name(el) + ' overflows its card: ' + own.left + '..' + own.right + ' in ' + c.left + '..' + c.right);
  }
}
// Side by side things must not overlap: the cells of a row, the facts of a card, the parts of a head.
const overlap = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
for (const group of document.querySelectorAll('tr, dl.facts, .page-head, .actions, .filters, .top, .top nav, .pager')) {
  if (!shown(group)) continue;
  const kids = Array.from(group.children).filter((k) => shown(k) && k.getBoundingClientRect().width > 0);
  for (let i = 0; i < kids.length; i++) {
    for (let j = i + 1; j < kids.length; j++) {
      if (overlap(kids[i].getBoundingClientRect(), kids[j].getBoundingClientRect())) problems.push(name(kids[i]) + ' overlaps ' + name(kids[j]));
    }
  }
}
const canvas = document.createElement('canvas').getContext('2d');
const wordWidth = (cell, word) => {
  const st = getComputedStyle(cell);
  canvas.font = st.font;
  const text = st.textTransform === 'uppercase' ? word.toUpperCase() : word;
  return canvas.measureText(text).width + (parseFloat(st.letterSpacing) || 0) * text.length;
};
for (const table of document.querySelectorAll('table')) {
  if (!shown(table)) continue;
  const heads = Array.from(table.querySelectorAll('thead th'));
  const stacked = !heads.length || !shown(table.querySelector('thead'));
  for (const row of table.querySelectorAll('tbody tr')) {
    for (const td of row.children) {
      if (!shown(td)) continue;
      const width = td.getBoundingClientRect().width;
      let label = stacked ? (td.getAttribute('data-label') || '') : ((heads[td.cellIndex] || {}).textContent || '');
      const longest = Math.max(0, ...label.trim().split(/\\s+/).filter(Boolean).map((w) => wordWidth(stacked ? td : heads[td.cellIndex], w)));
      const need = stacked ? longest + 16 : longest;
      if (width + 0.5 < need) problems.push(name(td) + ' is ' + width.toFixed(1) + 'px, narrower than its header word ' + label.trim() + ' (' + need.toFixed(1) + 'px)');
      if (stacked && label.trim()) {
        // The label sits in the cell's left padding, on one line: it must fit there (else it would
        // be cut, or run into the value).
        const before = getComputedStyle(td, '::before');
        canvas.font = before.font;
        const text = label.trim().toUpperCase();
        const full = canvas.measureText(text).width + (parseFloat(before.letterSpacing) || 0) * text.length;
        const room = parseFloat(getComputedStyle(td).paddingLeft) - 4;
        if (full > room) problems.push(name(td) + ': its label ' + text + ' (' + full.toFixed(1) + 'px) does not fit in ' + room + 'px');
      }
    }
  }
}
const url = document.querySelector('tr[data-source="endpoints.hello"] .url-text');
const urlWidth = url ? url.getBoundingClientRect().width : null;
return {problems: problems.slice(0, 20), count: problems.length, urlWidth: urlWidth, height: document.documentElement.scrollHeight};
"""


def _at(driver: Any, width: int, height: int = 900) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
    )


def measure(driver: Any, width: int, page: str) -> dict[str, Any]:
    _at(driver, width)
    wait("the page to lay out", lambda: driver.execute_script("return document.readyState") == "complete")
    result: dict[str, Any] = driver.execute_script(MEASURE)
    _at(driver, width, min(int(result["height"]), 5000))  # the whole page in the screenshot
    path = shot(driver, f"width-{width}-{page}")
    _at(driver, width)
    result["shot"] = str(path)
    return result


@pytest.fixture
def seeded(router_factory):  # type: ignore[no-untyped-def]
    router = router_factory(demo_config())
    admin = Admin(router)
    hello = admin.source("endpoints.hello")["url"]
    long_key = "order-" + "x" * 180 + "-end"
    sid = httpx.post(
        hello,
        json={"name": "ada", "note": "word " * 200, "id": "y" * 300},
        headers={"Idempotency-Key": long_key, "X-A-Rather-Long-Header-Name-For-Testing": "v" * 200},
    ).json()
    sig = sid.get("signal_id") or admin.ok("GET", "/api/signals")["items"][0]["id"]
    payments = admin.source("webhooks.payments")["url"]
    for i in range(3):
        httpx.post(payments, json={"amount": i})
    httpx.post(payments.split("?")[0] + "?apiKey=wrong", json={"a-very-long-field-name-" * 10: 1})
    httpx.post(f"{router.base}/webhooks/incoming/" + "n" * 120, content=b"x")
    wait("the refusals to be kept", lambda: len(admin.ok("GET", "/api/refused")["items"]) == 2)
    yield router, admin, sig, long_key
    admin.close()


def test_every_page_fits_1400_800_and_390_px(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    router, admin, sig, long_key = seeded
    pages = {"sources": "/", "signals": "/signals", "inspector": f"/signals/{sig}", "refused": "/refused"}
    failures: list[str] = []
    with chromium(tmp_path / "profile") as driver:
        login(driver, admin.base, TOKEN)
        for width in WIDTHS:
            for page, path in pages.items():
                driver.get(admin.base + path)
                result = measure(driver, width, page)
                failures += [f"{width}px {page}: {p}" for p in result["problems"]]
                if page == "sources":
                    # Readable: the URL gets real room, not "h." (before: 14 px at 800).
                    assert result["urlWidth"] and result["urlWidth"] >= min(300, width - 180), (width, result)
                if page == "inspector":
                    key = driver.find_element("css selector", "#dedup-key")
                    assert key.text.replace("\n", "") == long_key
    assert not failures, "\n".join(failures)
