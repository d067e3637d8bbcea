"""`safety-heads figures`: the gallery is built on the organism (a fast configuration), every figure
the index links exists, and in headless Chromium the index and every figure load without console
errors and every plotly figure renders (its div gets the `js-plotly-plot` class and an SVG).

The browser is driven over the Chrome DevTools Protocol with `websocket-client` (a dependency of
jupyter_server, so of the dev extra); no Playwright. Without a Chrome/Chromium the browser test is
skipped, and fails under CI=true: `bash scripts/install_browser.sh` installs one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest

from interp.commands.figures import GalleryConfig, build_gallery
from interp.gallery import CAPTIONS, caption_for, find_browser
from interp.study import StudyConfig

FAST = StudyConfig(per_cell=2, n_train=16)  # the demo's defaults are 20 / 64; every section still runs


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    out = tmp_path_factory.mktemp("gallery")
    import plotly.graph_objects as go

    from interp.plotting import save_figure

    # a figure a notebook left in the folder: listed under "From the notebooks", not regenerated
    save_figure(go.Figure(go.Bar(y=[1, 2])), out / "01_refusal_by_family")
    png = bool(find_browser()) and _has("kaleido")
    t = time.perf_counter()
    g = build_gallery(GalleryConfig(out=str(out), png=png, study=FAST), progress=False)
    print(f"gallery: {len(g.figures)} figures in {time.perf_counter() - t:.0f} s (png={png}, error={g.png_error})")
    return g


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (class, href)
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append((a.get("class", ""), a["href"]))
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])


def test_captions_for_known_and_unknown_names():
    assert caption_for("refusal_vs_strength.html") == CAPTIONS["refusal_vs_strength"]
    assert "roleplay" in caption_for("attention_tokens_roleplay")
    assert caption_for("my_new_figure.html") == "My new figure."


def test_png_export_failure_is_reported_not_raised(tmp_path, monkeypatch):
    import plotly.graph_objects as go

    from interp.gallery import export_pngs

    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-browser"))
    written, error = export_pngs({str(tmp_path / "a.html"): go.Figure(go.Bar(y=[1, 2]))}, tmp_path)
    assert written == [] and error and "install_browser.sh" in error


def test_cli_registers_figures_command():
    import argparse

    from interp.commands import figures as figures_cli

    parser = argparse.ArgumentParser()
    figures_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["figures", "--out", "x", "--png", "--per-cell", "3"])
    assert args.func is figures_cli._figures and args.png and args.per_cell == 3 and args.model == "organism"


def test_gallery_lists_exactly_what_the_stages_returned_on_one_model_load(tmp_path, monkeypatch):
    """The index is built from the stages' returned figures (each under its stage), the token
    heatmaps come from a stage on the study's own model, and the model is loaded once."""
    from transformer_lens import TransformerBridge

    import interp.pipeline as pipeline
    from interp.plotting import save_figure

    boot = TransformerBridge.boot_transformers
    loads = []

    def counting_boot(*a, **k):  # where every load ends (see tests/test_bad_input.py)
        loads.append(a[0] if a else k.get("model_name"))
        return boot(*a, **k)

    monkeypatch.setattr(TransformerBridge, "boot_transformers", staticmethod(counting_boot))
    returned = {}
    real_run = pipeline.run_study

    def spy(*a, **k):
        res = real_run(*a, **k)
        returned.update({stage: dict(figs) for stage, figs in res.figures.items()})
        return res

    monkeypatch.setattr(pipeline, "run_study", spy)
    out = tmp_path / "g"
    out.mkdir()
    (out / "stale_figure.html").write_text("<html></html>")  # not made by a stage: must not be listed
    import plotly.graph_objects as go

    save_figure(go.Figure(go.Bar(y=[1])), out / "04_slipping_lines")  # a notebook's figure: listed apart
    g = build_gallery(GalleryConfig(out=str(out), study=replace(FAST, sections=("baseline", "slipping"))),
                      progress=False)
    assert len(loads) == 1, f"the model was loaded {len(loads)} times: {loads}"
    assert set(returned) == {"baseline", "slipping", "attention_tokens"}
    assert returned["attention_tokens"] and all(n.startswith("attention_tokens_") for n in returned["attention_tokens"])
    listed = {(f["section"], f["file"]) for f in g.figures if f["section"] != "notebooks"}
    assert listed == {(stage, f"{name}.html") for stage, figs in returned.items() for name in figs}
    assert [f["file"] for f in g.figures if f["section"] == "notebooks"] == ["04_slipping_lines.html"]
    assert "stale_figure.html" not in {f["file"] for f in g.figures}
    for f in g.figures:
        assert (out / f["file"]).is_file()
    assert "attention_tokens" not in g.report  # figure-only stage: no report numbers


def test_attention_tokens_runs_only_when_named():
    from interp.errors import InputError
    from interp.pipeline import EXTRA_STAGES, STAGES, check_sections

    assert check_sections(None) == list(STAGES) and "attention_tokens" not in STAGES
    assert check_sections(["slipping", "attention_tokens"]) == ["slipping", "attention_tokens"]
    assert "attention_tokens" in EXTRA_STAGES
    with pytest.raises(InputError, match="attention_tokens"):
        check_sections(["nope"])
    assert GalleryConfig(study=replace(FAST, sections=("baseline",))).sections() == ("baseline",)
    assert GalleryConfig().sections() == STAGES + ("attention_tokens",)
    assert GalleryConfig(token_heatmaps=False).sections() == STAGES


@pytest.mark.slow
def test_gallery_links_every_figure_with_a_caption(gallery):
    index = gallery.index
    assert index.is_file()
    parser = _Links()
    parser.feed(index.read_text())
    figures = [href for cls, href in parser.links if cls == "figure"]
    on_disk = sorted(p.name for p in gallery.out.glob("*.html") if p.name != "index.html")
    assert sorted(figures) == on_disk, "index.html must link exactly the figures written"
    for href in [h for _, h in parser.links] + parser.images:
        assert (gallery.out / href).is_file(), f"index.html links {href}, which is missing"
    # every demo section that makes figures is represented, plus the token heatmaps
    sections = {f["section"] for f in gallery.figures}
    assert {"baseline", "heads", "attention_tokens", "notebooks"} <= sections
    in_report = set(re.findall(r'"figures/([\w.-]+\.html)"', json.dumps(gallery.report)))
    assert in_report and in_report <= set(on_disk), f"figures in report.json but not in the gallery: {in_report - set(on_disk)}"
    for f in gallery.figures:
        assert f["caption"] and len(f["caption"].splitlines()) == 1
    made = [f for f in gallery.figures if f["section"] != "notebooks"]
    if gallery.png_error is None and any(f["png"] for f in made):
        assert all(f["png"] for f in made), "PNG export must cover every figure the command made"


# ------------------------------------------------------------------ headless Chromium over CDP
class Browser:
    """Just enough of the Chrome DevTools Protocol: open a page, navigate, evaluate, collect errors."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0):
        import websocket  # websocket-client

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
             "--remote-allow-origins=*", "--allow-file-access-from-files", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError(f"{binary} did not start a DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        self.timeout = timeout
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def _recv(self) -> dict:
        return json.loads(self.ws.recv())

    def call(self, method: str, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = self._recv()
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str) -> dict:
        for i, msg in enumerate(self.events):
            if msg.get("method") == event:
                return self.events.pop(i)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            msg = self._recv()
            if msg.get("method") == event:
                return msg
            self.events.append(msg)
        raise TimeoutError(event)

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads) seen so far."""
        out = []
        for m in self.events:
            p = m.get("params", {})
            if m.get("method") == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif m.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def drain(self, seconds: float) -> None:
        """Collect events that arrive within `seconds` (late console errors)."""
        self.ws.settimeout(0.2)
        end = time.time() + seconds
        try:
            while time.time() < end:
                try:
                    self.events.append(self._recv())
                except Exception:  # the socket's timeout: nothing more to read now
                    pass
        finally:
            self.ws.settimeout(self.timeout)

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


RENDERED = """(async () => {
  for (let i = 0; i < 100; i++) {
    const plots = document.querySelectorAll('.js-plotly-plot');
    const svgs = document.querySelectorAll('.js-plotly-plot .main-svg');
    if (plots.length && svgs.length) {
      const traces = Array.from(plots).map(p => (p.data || []).length);
      return {plots: plots.length, svgs: svgs.length, traces: traces, title: document.title};
    }
    await new Promise(r => setTimeout(r, 100));
  }
  return {plots: document.querySelectorAll('.js-plotly-plot').length, svgs: 0, traces: [], title: document.title};
})()"""


def require_browser() -> str:
    """The Chrome/Chromium binary; without one, skip locally and fail under CI=true."""
    from conftest import missing, require_module

    binary = find_browser()
    if not binary or not (Path(binary).is_file() or shutil.which(binary)):
        missing("no Chrome/Chromium found (PATH or BROWSER_PATH): run `bash scripts/install_browser.sh`")
    require_module("websocket", "websocket-client is not installed: pip install -e '.[dev]'")
    return binary


def test_missing_browser_fails_under_ci(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "find_browser", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(BaseException) as info:
        require_browser()
    assert info.type is pytest.fail.Exception, f"under CI=true a missing browser must fail the test, not {info.typename}"
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_browser()


@pytest.mark.slow
def test_gallery_renders_in_headless_chromium(gallery, tmp_path):
    browser = Browser(require_browser(), tmp_path / "profile")
    try:
        browser.open(gallery.index.as_uri())
        browser.drain(0.5)
        info = browser.evaluate("""({title: document.title,
            figures: Array.from(document.querySelectorAll('a.figure')).map(a => a.getAttribute('href')),
            images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}))})""")
        assert info["title"] == "safety-heads figures"
        assert info["figures"] == [f["file"] for f in gallery.figures]
        assert all(i["ok"] for i in info["images"]), f"thumbnails that did not load: {[i for i in info['images'] if not i['ok']]}"
        assert not browser.errors(), f"index.html: console errors {browser.errors()}"
        for name in info["figures"]:
            browser.open((gallery.out / name).as_uri())
            got = browser.evaluate(RENDERED)
            browser.drain(0.2)
            assert got["plots"] >= 1 and got["svgs"] >= 1, f"{name} did not render a plotly figure: {got}"
            assert all(n >= 1 for n in got["traces"]), f"{name} rendered a figure without data: {got}"
            assert not browser.errors(), f"{name}: console errors {browser.errors()}"
    finally:
        browser.close()
