"""The web book, built once (`python tasks.py book --no-venv --output outputs/tests/book`) and read in a real browser.

Headless Chromium (Debian's ``chromium``, driven by Playwright through its ``executable_path``: Playwright cannot
download its own browsers here) opens every page at desktop width and at a 390-px phone width and checks what a
reader sees: every formula typeset by MathJax without an error, no TeX or ``$$`` left in the visible text, every image
and animation loaded, no JavaScript error, no failed request, the Colab and Binder buttons pointing at that notebook,
no horizontal scrolling on the phone. Screenshots go to outputs/tests/book-screenshots/ for people to look at.

With the ``CI`` variable set, a missing Chromium, Playwright or Sphinx fails these tests; without it they skip,
naming what is missing (`.ci/run` installs Chromium; `python tasks.py test` installs the book extra and Playwright).
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from local_server import serve

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "outputs" / "tests" / "book"
SCREENSHOTS = ROOT / "outputs" / "tests" / "book-screenshots"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAPERS = sorted((ROOT / "papers").glob("*.md"))
PAGES = ["index.html", *(f"{nb.stem}.html" for nb in NOTEBOOKS), *(f"papers/{md.stem}.html" for md in PAPERS),
         "licences.html"]
SOURCE = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]["Source"]
REPOSITORY, _, PINNED_REF = SOURCE.partition("/tree/")
SLUG, BRANCH = REPOSITORY.removeprefix("https://github.com/"), PINNED_REF or "main"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
WIDTHS = {"desktop": 1280, "phone": 390}
# Chromium's own traffic disabled, so that the closed network adds no failed requests of its own.
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                 "--disable-sync", "--no-first-run", "--disable-domain-reliability", "--metrics-recording-only",
                 "--no-default-browser-check", "--disable-features=OptimizationHints,MediaRouter,Translate"]


def missing_tools(browser: bool) -> list[str]:
    missing = []
    if importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("myst_nb") is None:
        missing.append('the book extra (pip install -e ".[book]")')
    if browser and importlib.util.find_spec("playwright") is None:
        missing.append("Playwright (pip install playwright)")
    if browser and not CHROMIUM.exists():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium; or set CHROMIUM)")
    return missing


def require_tools(browser: bool):
    missing = missing_tools(browser)
    if missing and os.environ.get("CI"):
        pytest.fail("CI is set but these are missing: " + "; ".join(missing))
    if missing:
        pytest.skip("missing: " + "; ".join(missing))


# Module scope: the server and Chromium are gone before the notebooks run under nbval (which time their cells).
@pytest.fixture(scope="module")
def built_book():
    """outputs/tests/book/, built once for this file (needs the book extra, not the browser)."""
    require_tools(browser=False)
    shutil.rmtree(BOOK, ignore_errors=True)
    command = [sys.executable, str(ROOT / "tasks.py"), "book", "--no-venv", "--output", str(BOOK)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the book build failed (warnings are errors):\n{done.stdout}\n{done.stderr}"
    return BOOK


@pytest.fixture(scope="module")
def book_site(built_book):
    """The built book served at http://127.0.0.1:<free port>."""
    with serve(built_book) as url:
        yield url


@pytest.fixture(scope="module")
def browser(book_site):
    require_tools(browser=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Reader:
    """A page opened like a reader does, recording JavaScript errors and failed requests."""

    def __init__(self, browser, url: str, width: int):
        self.errors, self.failed = [], []
        self.context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("requestfailed", lambda request: self.failed.append(f"{request.url}: {request.failure}"))
        self.page.on("response", lambda response: response.status >= 400 and self.failed.append(
            f"{response.url}: HTTP {response.status}"))
        self.page.goto(url, wait_until="load")
        if self.page.query_selector('script[src*="mathjax/tex-chtml.js"]'):  # Sphinx adds MathJax to pages with math
            # MathJax 3 has typeset the page when its startup promise resolves (then one frame for book.js)
            self.page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                        timeout=60_000)
            self.page.evaluate("() => MathJax.startup.promise.then(() => new Promise(requestAnimationFrame))")

    def close(self):
        self.context.close()


PAGE_FACTS = """() => {
  const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const skip = 'pre, code, script, style, noscript, mjx-container, .highlight, .cell_input, textarea';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const texts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (parent && !parent.closest(skip) && visible(parent)) texts.push(node.textContent);
  }
  const images = [...document.querySelectorAll('img')].filter(visible);
  return {
    text: texts.join(' '),
    formulas: document.querySelectorAll('.math.notranslate').length,
    typeset: document.querySelectorAll('.math.notranslate mjx-container').length,
    errors: [...document.querySelectorAll('mjx-merror, [data-mjx-error]')].map(
      e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80)),
    broken_images: images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src.slice(0, 100)),
    images: images.length,
    scroll_width: document.documentElement.scrollWidth,
    width: window.innerWidth,
    colab: [...document.querySelectorAll('.dropdown-launch-buttons a[href*="colab.research.google.com"]')]
      .map(a => a.href),
    binder: [...document.querySelectorAll('.dropdown-launch-buttons a[href*="mybinder.org"]')].map(a => a.href),
  };
}"""


def page_problems(facts: dict, page: str, width: int) -> list[str]:
    problems = []
    if facts["errors"]:
        problems.append(f"math errors: {facts['errors'][:5]}")
    if facts["typeset"] < facts["formulas"]:
        problems.append(f"{facts['formulas']} formulas, {facts['typeset']} typeset")
    raw = sorted(set(re.findall(r"\\[A-Za-z]+|\$\$", facts["text"])))
    if raw:
        problems.append(f"TeX in the visible text: {raw[:10]}")
    if facts["broken_images"]:
        problems.append(f"images not loaded: {facts['broken_images'][:5]}")
    if width <= 400 and facts["scroll_width"] > facts["width"]:
        problems.append(f"scrolls sideways at {width} px: the page is {facts['scroll_width']} px wide")
    stem = page.removesuffix(".html")
    if (ROOT / "notebooks" / f"{stem}.ipynb").exists():
        colab = f"https://colab.research.google.com/github/{SLUG}/blob/{BRANCH}/notebooks/{stem}.ipynb"
        binder = f"https://mybinder.org/v2/gh/{SLUG}/{BRANCH}?urlpath=lab/tree/notebooks/{stem}.ipynb"
        if facts["colab"] != [colab]:
            problems.append(f"Colab button {facts['colab']}, expected [{colab}]")
        if facts["binder"] != [binder]:
            problems.append(f"Binder button {facts['binder']}, expected [{binder}]")
    return problems


def test_every_notebook_is_a_page_in_number_order(built_book):
    index = (BOOK / "index.html").read_text(encoding="utf-8")
    nav = index[index.find('class="bd-sidebar-primary'):]
    found = [name for name in re.findall(r'href="(\d\d_[a-z0-9_]+)\.html"', nav)]
    expected = [nb.stem for nb in NOTEBOOKS]
    assert list(dict.fromkeys(found)) == expected
    assert all((BOOK / page).is_file() for page in [*PAGES, "search.html"])


def test_the_setup_cell_is_hidden(built_book):
    for notebook in NOTEBOOKS:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        setup = "".join(next(cell for cell in cells if cell["cell_type"] == "code")["source"])
        names = set(re.findall(r"^(HELPERS_[A-Z]+) =", setup, re.M))
        assert names, f"{notebook.name}: the first code cell sets no HELPERS_* name"
        html = (built_book / f"{notebook.stem}.html").read_text(encoding="utf-8")
        assert not [name for name in names if name in html], f"{notebook.stem}.html shows the setup cell"


def test_the_site_carries_its_own_mathjax_and_no_cdn(built_book):
    assert (BOOK / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in PAGES:
        html = (BOOK / page).read_text(encoding="utf-8")
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', html)
        assert remote == [], f"{page} loads {remote}"


@pytest.mark.parametrize("page", PAGES)
def test_page_reads_right_in_a_browser(browser, book_site, page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    for name, width in WIDTHS.items():
        reader = Reader(browser, f"{book_site}/{page}", width)
        try:
            facts = reader.page.evaluate(PAGE_FACTS)
            reader.page.screenshot(path=str(SCREENSHOTS / f"{page.replace('/', '_')[:-5]}-{name}.png"), full_page=True)
            problems += [f"{name}: {problem}" for problem in page_problems(facts, page, width)]
            # No allow-list: the site needs nothing from outside 127.0.0.1 and must log no error.
            problems += [f"{name}: JavaScript error: {error}" for error in reader.errors]
            problems += [f"{name}: failed request: {failed}" for failed in reader.failed]
            print(f"{page} at {width} px: {facts['typeset']} formulas typeset, {facts['images']} images")
        finally:
            reader.close()
    assert not problems, f"{page}:\n" + "\n".join(problems)


@pytest.mark.parametrize("query, page", [("DDIM", "04_mnist.html"), ("posterior", "02_reverse_process.html")])
def test_search_finds_the_notebook(browser, book_site, query, page):
    reader = Reader(browser, f"{book_site}/search.html?q={query}", WIDTHS["desktop"])
    try:
        reader.page.wait_for_selector("#search-results ul.search li", timeout=60_000)
        links = reader.page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(a => a.href)")
        assert any(link.split("?")[0].split("#")[0].endswith(f"/{page}") for link in links), links
        assert not reader.errors and not reader.failed, reader.errors + reader.failed
    finally:
        reader.close()
