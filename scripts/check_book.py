#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium and fail on what a reader would see broken.

    python scripts/check_book.py [book/_build/html] [--screenshots DIR] [--chromium PATH] [--allow-network]

Checks, per page (after MathJax has typeset): a broken image; an error output (a traceback) or a stderr
output; a table wider than the text column; a raw ``\\(`` / ``\\[`` / ``$$`` outside code (maths not rendered);
an absolute path in an output (print paths with rtsseg.book.rel); an unresolved citation or cross-reference (``{cite}`` left as text, a reference rendered without a link, a
``[key]`` that sphinxcontrib-bibtex could not find); a run record
with a ``+dirty`` commit; a request to the network (the book must work offline); an edition's placeholder
("not run in this edition") inside a sentence; pandas' truncation ("N rows × M columns", "…" rows, cells cut
with "..."), column labels mangled by duplicate names ("linear.1"); an unrendered glue key; float noise
("26.299999"); a table captioned "Fig."; an image that shows (almost) nothing (an empty figure); a link to an
anchor the page does not have.
A screenshot of each page goes to ``book/_build/screenshots/``. Exit status 1 when any page has a problem.

Chromium is driven over the DevTools protocol (``websocket-client``); Debian's package is ``chromium``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0",
    "--allow-file-access-from-files", "--window-size=1280,900",
]
SKIP = {"search.html", "genindex.html", "py-modindex.html"}
VIEWPORT = (1280, 900)
MAX_SHOT_HEIGHT = 16000

#: Runs in the page; returns a list of problems (strings).
CHECK_JS = r"""
(() => {
  const problems = [];
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  if (!article) return ['empty page'];
  const text = (el) => (el.innerText || el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 100);
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) problems.push('broken image: ' + (img.getAttribute('src') || '').slice(0, 120));
  }
  for (const el of document.querySelectorAll('.output.error, .output.traceback, .output_error, div.traceback, .output.stderr')) {
    problems.push('error/stderr output: ' + text(el));
  }
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth + 2) problems.push(`page wider than the window (${page.scrollWidth} px > ${window.innerWidth} px)`);
  const width = article.clientWidth;
  for (const table of article.querySelectorAll('table')) {
    const w = Math.max(table.scrollWidth, table.getBoundingClientRect().width);
    if (w > width + 2) problems.push(`table wider than the page (${Math.round(w)} px > ${width} px): ` + text(table));
  }
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const raw = /\\\(|\\\[|\$\$|\{cite[:a-z]*\}|\{glue[:a-z]*\}|\{doc\}|\{ref\}|\{numref\}/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest('pre, code, script, style, .highlight, mjx-container, .MathJax')) continue;
    const m = n.nodeValue.match(raw);
    if (m) problems.push(`raw markup "${m[0]}" in the text: ` + n.nodeValue.trim().slice(0, 100));
  }
  const absolute = /(^|[\s'"(=])\/(home|work|tmp|root|Users|content|mnt|scratch)\/[^\s]*/;
  for (const el of article.querySelectorAll('.cell_output')) {
    const m = (el.innerText || '').match(absolute);
    if (m) problems.push('absolute path in an output: ' + m[0].trim().slice(0, 100));
  }
  if ((article.innerText || '').includes('+dirty')) problems.push('a run record names a +dirty commit: execute the book from a clean commit');
  for (const el of article.querySelectorAll('span.xref, span.pending_xref, .problematic')) {
    if (!el.closest('a')) problems.push('unresolved reference: ' + text(el));
  }
  for (const el of article.querySelectorAll('span.cite, .citation-reference')) {
    if (!el.closest('a') && !el.querySelector('a')) problems.push('unresolved citation: ' + text(el));
  }
  // An edition's placeholder is fine alone in a table cell, not inside a sentence ("differs by *not run* mIoU").
  for (const em of article.querySelectorAll('em')) {
    if (!/not run in this edition/.test(em.textContent)) continue;
    const block = em.closest('p, li, dd');
    if (!block || block.closest('td, th')) continue;
    const rest = (block.textContent || '').replace(em.textContent, '').replace(/[\s.,;:()\u2013\u2014-]/g, '');
    if (rest.length > 0) problems.push('placeholder inside a sentence: ' + text(block));
  }
  // pandas' truncated repr: "856 rows × 6 columns" under a table, or a row/column of "…" cells.
  for (const el of article.querySelectorAll('p, div, span')) {
    if (el.children.length) continue;
    const m = (el.textContent || '').match(/^\s*\d+ rows × \d+ columns\s*$/);
    if (m) problems.push('pandas truncated a table: ' + m[0].trim());
  }
  for (const row of article.querySelectorAll('tr')) {
    const cells = [...row.querySelectorAll('td, th')].map(c => (c.textContent || '').trim());
    if (cells.length > 1 && cells.filter(c => c === '...' || c === '…').length >= Math.max(2, cells.length - 1))
      problems.push('pandas truncation row ("…") in a table: ' + text(row));
  }
  for (const cell of article.querySelectorAll('td, th')) {
    const t = (cell.textContent || '').trim();
    if (/\S(\.\.\.|…)$/.test(t)) problems.push('table cell cut short: ' + t.slice(0, 60));
    if (cell.tagName === 'TH' && /^[A-Za-z][\w ]*[A-Za-z_]\.\d+$/.test(t)) problems.push('mangled column label (duplicate names?): ' + t);
  }
  // A glue key that did not render, and float noise such as 26.299999.
  for (let n = document.createTreeWalker(article, NodeFilter.SHOW_TEXT), t = n.nextNode(); t; t = n.nextNode()) {
    if (t.parentElement.closest('pre, code, script, style, .highlight, mjx-container, .MathJax')) continue;
    const v = t.nodeValue;
    const g = v.match(/\{glue:[a-z]*\}`?[\w.-]*|application\/papermill\.record/);
    if (g) problems.push('unrendered glue: ' + g[0]);
    const f = v.match(/\d+\.\d*(9{5,}|0{5,})\d*/);
    if (f) problems.push('unrounded number: ' + f[0]);
  }
  // A table is captioned as a table, not as a figure.
  for (const fig of article.querySelectorAll('figure, div.figure')) {
    const num = fig.querySelector('.caption-number');
    if (num && fig.querySelector('table') && !fig.querySelector('img') && /^Fig/.test(num.textContent.trim()))
      problems.push('a table captioned as a figure: ' + text(num.parentElement || num));
  }
  // A link to an anchor of this page that does not exist (e.g. "#05_attention_maps.html": a chapter link that
  // MyST read as a label it could not find).
  for (const a of article.querySelectorAll('a[href^="#"]')) {
    const id = decodeURIComponent(a.getAttribute('href').slice(1));
    if (id && !document.getElementById(id)) problems.push('link to a missing anchor: #' + id.slice(0, 80));
  }
  // An image that loaded but shows (almost) nothing: an empty figure.
  for (const img of document.images) {
    if (!img.complete || img.naturalWidth === 0) continue;
    try {
      const c = document.createElement('canvas');
      const w = c.width = Math.min(img.naturalWidth, 400), h = c.height = Math.min(img.naturalHeight, 400);
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0, w, h);
      const d = ctx.getImageData(0, 0, w, h).data;
      const bg = [d[0], d[1], d[2]];
      let ink = 0;
      for (let i = 0; i < d.length; i += 4)
        if (d[i + 3] > 0 && Math.abs(d[i] - bg[0]) + Math.abs(d[i + 1] - bg[1]) + Math.abs(d[i + 2] - bg[2]) > 60) ink++;
      if (w * h > 400 && ink / (w * h) < 0.003) problems.push('empty figure: ' + (img.getAttribute('src') || '').slice(0, 120));
    } catch (e) { /* a cross-origin image cannot be read: nothing to say */ }
  }
  return problems;
})()
"""

MATHJAX_READY_JS = r"""
new Promise((resolve) => {
  const t0 = Date.now();
  (function wait() {
    const mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(() => resolve('typeset'), () => resolve('mathjax error')); return; }
    if (!document.querySelector('script[src*="mathjax"], script[id*="MathJax"]') && document.readyState === 'complete') { resolve('no mathjax'); return; }
    if (Date.now() - t0 > 15000) { resolve('mathjax timeout'); return; }
    setTimeout(wait, 100);
  })();
})
"""


def find_chromium(explicit: str | None = None) -> str | None:
    for name in filter(None, [explicit, os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]):
        path = shutil.which(name) or (name if Path(name).is_file() else None)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium and one page target, driven by DevTools commands."""

    def __init__(self, chromium: str):
        import websocket  # websocket-client

        self.profile = tempfile.mkdtemp(prefix="rtsseg-chromium-")
        self.proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"{chromium} did not start (exit {self.proc.returncode}); try running it by hand with {FLAGS}")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        for _ in range(50):
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            time.sleep(0.2)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1],
                  deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(i)
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str, await_promise: bool = False):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in res:
            det = res['exceptionDetails']
            raise RuntimeError(f"page script failed: {det.get('exception', {}).get('description') or det.get('text')}")
        return res["result"].get("value")

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def external_requests(self) -> list[str]:
        urls = [ev["params"]["request"]["url"] for ev in self.events if ev["method"] == "Network.requestWillBeSent"]
        return [u for u in urls if not u.startswith(("file:", "data:", "blob:", "about:", "chrome"))]

    def screenshot(self, path: Path) -> None:
        """The whole page: the window is made as tall as the page (capped), then captured, then restored."""
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = max(VIEWPORT[1], min(int(size["height"]) + 1, MAX_SHOT_HEIGHT))
        self.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=height, deviceScaleFactor=1, mobile=False)
        try:
            shot = self.call("Page.captureScreenshot", format="png")
        finally:
            self.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1],
                      deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def _redirect(page: Path) -> bool:
    head = page.read_text(errors="replace")[:2000].lower()
    return 'http-equiv="refresh"' in head


def pages(html: Path) -> list[Path]:
    """Every built page but the search/index pages, the theme's folders and redirect stubs."""
    return sorted(p for p in html.rglob("*.html")
                  if p.name not in SKIP and not any(part.startswith("_") for part in p.relative_to(html).parts[:-1])
                  and not _redirect(p))


def check_book(html: Path, screenshots: Path | None = None, chromium: str | None = None,
               allow_network: bool = False, only: str | None = None) -> dict[str, list[str]]:
    """page (relative path) -> its problems; every page is listed, an empty list when it is fine."""
    exe = find_chromium(chromium)
    if exe is None:
        raise FileNotFoundError("no Chromium found. Fix: apt-get install -y chromium, or pass --chromium PATH")
    html = html.resolve()
    found = [p for p in pages(html) if only is None or only in p.relative_to(html).as_posix()]
    if not found:
        raise FileNotFoundError(f"no built pages under {html}. Fix: build the book first (rtsseg book --profile cpu)")
    if screenshots:
        screenshots.mkdir(parents=True, exist_ok=True)
    browser = Browser(exe)
    report: dict[str, list[str]] = {}
    try:
        for page in found:
            name = page.relative_to(html).as_posix()
            browser.open(page.as_uri())
            state = browser.evaluate(MATHJAX_READY_JS, await_promise=True)
            problems = list(browser.evaluate(CHECK_JS) or [])
            if state in ("mathjax timeout", "mathjax error"):
                problems.append(f"maths not rendered: {state}")
            if not allow_network:
                problems += [f"network request (the book must work offline): {u[:120]}" for u in browser.external_requests()]
            if screenshots:
                browser.screenshot(screenshots / (name.replace("/", "__").removesuffix(".html") + ".png"))
            report[name] = problems
    finally:
        browser.close()
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", nargs="?", default=str(REPO / "book" / "_build" / "html"))
    ap.add_argument("--screenshots", default=None, help="default: <html>/../screenshots")
    ap.add_argument("--chromium", default=None)
    ap.add_argument("--only", default=None, help="check only the pages whose path contains this text")
    ap.add_argument("--allow-network", action="store_true", help="do not fail on requests leaving the machine")
    args = ap.parse_args(argv)
    html = Path(args.html)
    shots = Path(args.screenshots) if args.screenshots else html.parent / "screenshots"
    report = check_book(html, shots, args.chromium, args.allow_network, args.only)
    bad = {k: v for k, v in report.items() if v}
    for name, problems in report.items():
        print(f"{'FAIL' if problems else 'ok  '} {name}")
        for p in problems:
            print(f"     - {p}")
    print(f"{len(report) - len(bad)} of {len(report)} pages pass; screenshots in {shots}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
