"""Opens an executed notebook in JupyterLab, in headless Chromium, and reports what the page shows.

The check a person would make: start JupyterLab (``jupyter lab``, headless, a random token, on
localhost), open the notebook in Chromium, wait until JupyterLab has rendered it, then read the
section titles and count the images on the page and save screenshots (the top of the notebook
and each "Step" section)::

    python -m orderstudy.notebook.browser_check params/demo.yaml --ordering F-P-Q   # or a notebook's path

Chromium is driven through its DevTools protocol (tornado's websocket client, which JupyterLab
brings): navigate, evaluate JavaScript, capture screenshots. It needs a ``chromium`` binary
(Debian: ``apt-get install chromium``); ``CHROMIUM`` names another one.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

# The flags that work in a container without a display, a GPU or network (first-run, sync and
# component updates would all try to reach Google).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars")
WINDOW = (1400, 1000)
# What JupyterLab has rendered of the notebook: its Markdown headings (cells and outputs) and images.
_PAGE_STATE = """JSON.stringify({
  headings: Array.from(document.querySelectorAll('.jp-Notebook .jp-RenderedMarkdown :is(h1,h2,h3)'))
                 .map(h => h.textContent.replace(/\\u00b6/g, '').trim()),
  images: document.querySelectorAll('.jp-Notebook .jp-RenderedImage img').length,
  errors: document.querySelectorAll('.jp-Notebook .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]').length,
  title: document.title})"""


# Scroll to the first figure after a section's heading (to the heading when the section has none).
_SCROLL_TO_FIRST_FIGURE = """(() => {
  const heading = Array.from(document.querySelectorAll('.jp-Notebook .jp-RenderedMarkdown h2'))
      .find(h => h.textContent.replace(/\\u00b6/g, '').trim() === %s);
  const next = Array.from(document.querySelectorAll('.jp-Notebook h2'))
      .find(h => heading.compareDocumentPosition(h) & Node.DOCUMENT_POSITION_FOLLOWING);
  const figure = Array.from(document.querySelectorAll('.jp-Notebook .jp-RenderedImage img')).find(img =>
      (heading.compareDocumentPosition(img) & Node.DOCUMENT_POSITION_FOLLOWING) &&
      (!next || (next.compareDocumentPosition(img) & Node.DOCUMENT_POSITION_PRECEDING)));
  (figure || heading).scrollIntoView({block: 'start'});
})()"""


class BrowserCheckError(RuntimeError):
    pass


@dataclass
class PageReport:
    """What the page showed: headings in order, image count, and the screenshots saved."""

    url: str
    headings: list[str]
    images: int
    seconds: float
    screenshots: dict[str, Path] = field(default_factory=dict)


def chromium_binary() -> str:
    """Return the Chromium executable (``$CHROMIUM``, or ``chromium`` / ``chromium-browser`` on the PATH)."""
    for name in filter(None, (os.environ.get("CHROMIUM"), "chromium", "chromium-browser")):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserCheckError("no Chromium found: install it (Debian/Ubuntu: apt-get install -y chromium) or set CHROMIUM")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, timeout_s: float, what: str, process: subprocess.Popen | None = None):
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if process is not None and process.poll() is not None:
            raise BrowserCheckError(f"{what}: the process exited with code {process.returncode}")
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise BrowserCheckError(f"{what}: not ready after {timeout_s:.0f} s")


@contextmanager
def jupyter_lab(root_dir: Path, log_path: Path, timeout_s: float = 120) -> Iterator[tuple[str, str]]:
    """Run JupyterLab on ``root_dir`` (localhost, a random port and token); yield ``(base url, token)``.

    Settings and workspaces go to a temporary directory, so the user's own do not change what it shows.
    """
    port, token = _free_port(), secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="orderstudy-lab-") as tmp, open(log_path, "wb") as log:
        # No "get Jupyter news?" prompt over the page: a check has no network and no one to answer it.
        news = Path(tmp) / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True)
        news.write_text(json.dumps({"fetchNews": "false"}))
        env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": f"{tmp}/settings", "JUPYTERLAB_WORKSPACES_DIR": f"{tmp}/workspaces",
               "JUPYTER_RUNTIME_DIR": f"{tmp}/runtime"}
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
             "--LabApp.extension_manager=readonly", *(["--allow-root"] if os.geteuid() == 0 else [])],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: _http_ok(f"{base}/api/status?token={token}"), timeout_s, "JupyterLab", process)
            yield base, token
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """Terminate ``process``, killing it if it has not exited 20 s later."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def chromium(log_path: Path, timeout_s: float = 60) -> Iterator[str]:
    """Run headless Chromium with a new empty profile; yield the DevTools websocket URL of its page."""
    with tempfile.TemporaryDirectory(prefix="orderstudy-chromium-") as profile, open(log_path, "wb") as log:
        process = subprocess.Popen(
            [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={WINDOW[0]},{WINDOW[1]}", "about:blank"], stdout=log, stderr=subprocess.STDOUT)
        try:
            active = Path(profile) / "DevToolsActivePort"
            port = _wait(lambda: active.is_file() and active.read_text().split("\n")[0].strip(), timeout_s,
                         "Chromium's DevTools port", process)

            def page_socket():
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                        pages = [p for p in json.load(response) if p.get("type") == "page"]
                except OSError:
                    return None
                return pages[0]["webSocketDebuggerUrl"] if pages else None

            yield _wait(page_socket, timeout_s, "Chromium's page", process)
        finally:
            _stop(process)


class DevTools:
    """A minimal synchronous client of Chromium's DevTools protocol over one page's websocket."""

    def __init__(self, websocket_url: str):
        from tornado.ioloop import IOLoop
        from tornado.websocket import websocket_connect

        self._loop = IOLoop()
        self._connection = self._loop.run_sync(lambda: websocket_connect(websocket_url, max_message_size=256 * 2**20))
        self._next_id = 0

    def call(self, method: str, timeout_s: float = 60, **params) -> dict:
        """Send one command and return its result (events that arrive meanwhile are dropped)."""
        self._next_id += 1
        message_id = self._next_id

        async def exchange():
            await self._connection.write_message(json.dumps({"id": message_id, "method": method, "params": params}))
            while True:
                raw = await self._connection.read_message()
                if raw is None:
                    raise BrowserCheckError(f"DevTools: the connection closed during {method}")
                reply = json.loads(raw)
                if reply.get("id") == message_id:
                    if "error" in reply:
                        raise BrowserCheckError(f"DevTools {method}: {reply['error']}")
                    return reply.get("result", {})

        return self._loop.run_sync(exchange, timeout=timeout_s)

    def evaluate(self, expression: str):
        """Return the value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self._connection.close()
        self._loop.close()


def check_notebook(notebook: Path, out_dir: Path, expect: tuple[str, ...] = ("Step 1",), timeout_s: float = 180) -> PageReport:
    """Open ``notebook`` in JupyterLab in headless Chromium; return what the page showed, screenshots saved in ``out_dir``.

    Waits until every heading in ``expect`` is on the page (JupyterLab renders the notebook a few
    seconds after the page loads), then saves ``<stem>.png`` (the top) and one screenshot per
    "Step" section, scrolled to it.
    """
    notebook = Path(notebook).resolve()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # JupyterLab opens a copy: its autosave never writes into the study's outputs.
    with tempfile.TemporaryDirectory(prefix="orderstudy-open-") as root, \
            jupyter_lab(Path(root), out_dir / "jupyterlab.log") as (base, token), \
            chromium(out_dir / "chromium.log") as page:
        shutil.copy2(notebook, Path(root) / notebook.name)
        url = f"{base}/lab/tree/{urllib.request.pathname2url(notebook.name)}?token={token}"
        tools = DevTools(page)
        try:
            tools.call("Page.enable")
            tools.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1, mobile=False)
            tools.call("Page.navigate", url=url)

            def rendered():
                state = json.loads(tools.evaluate(_PAGE_STATE) or "{}")
                headings = state.get("headings") or []
                return state if all(any(e in h for h in headings) for e in expect) and state.get("images") else None

            state = _wait(rendered, timeout_s, f"JupyterLab rendering {notebook.name} (expected headings {list(expect)})")
            time.sleep(2.0)  # images decode and the layout settles
            state = json.loads(tools.evaluate(_PAGE_STATE))
            shots = {"top": tools.screenshot(out_dir / f"{notebook.stem}.png")}
            for heading in [h for h in state["headings"] if h.startswith("Step ")]:
                tools.evaluate(_SCROLL_TO_FIRST_FIGURE % json.dumps(heading))
                time.sleep(1.0)
                shots[heading] = tools.screenshot(out_dir / f"{notebook.stem}-{heading.lower().replace(' ', '')}.png")
        finally:
            tools.close()
    return PageReport(url.split("?")[0], state["headings"], state["images"], round(time.monotonic() - started, 1), shots)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m orderstudy.notebook.browser_check", description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path,
                        help="an executed notebook (outputs/<study>/notebooks/F-P-Q.ipynb), or a params file: its study's notebook of --ordering (and --seed)")
    from ..core.plan import ordering_argument

    parser.add_argument("--ordering", default="F>P>Q", type=ordering_argument,
                        help="with a params file: which ordering's notebook, e.g. F-P-Q or FPQ (default F-P-Q)")
    parser.add_argument("--seed", type=int, help="with a params file of several seeds: which seed's notebook (default the first)")
    parser.add_argument("--out", type=Path, help="where the screenshots go (default: outputs/<study>/browser)")
    parser.add_argument("--expect", nargs="*", default=["The base model", "Step 1", "Evaluation", "The result file"],
                        help="headings the page must show")
    args = parser.parse_args(argv)
    notebook = args.target
    if notebook.suffix in (".yaml", ".yml"):
        from ..core.params import load_params
        from ..core.paths import StudyPaths

        params = load_params(args.target)
        seed = args.seed if args.seed is not None else params.seeds[0]
        family = params.families[0] if params.families else None   # a study of families: the first one's notebook
        notebook = StudyPaths(params.study, family=family).notebook(args.ordering, seed if len(params.seeds) > 1 else None)
    if not notebook.is_file():
        print(f"error: {notebook}: no such notebook (run the study first: make study)", file=sys.stderr)
        return 2
    try:
        report = check_notebook(notebook, args.out or notebook.parent.parent / "browser", tuple(args.expect))
    except BrowserCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{report.url}: rendered in {report.seconds} s, {report.images} images, headings:")
    for heading in report.headings:
        print(f"  {heading}")
    for name, path in report.screenshots.items():
        print(f"screenshot ({name}): {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
