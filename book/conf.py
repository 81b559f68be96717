"""Sphinx configuration of the web book (Sphinx + MyST-NB + sphinx-book-theme; `python tasks.py book`).

tasks.py stages the sources (the committed notebooks, the intro page made from the README, the papers pages and the
licences) into a folder and runs ``python -m sphinx -W -c book <staged> <output>``. Nothing here names the repository:
its address is read from pyproject.toml's ``[project.urls] Source`` at build time. Nothing is executed (the committed
notebooks carry their full-profile outputs). MathJax 3 is copied into the site from the django-static-mathjax package
(MathJax's own build, packaged for PyPI), never loaded from a CDN.
"""

import shutil
import tomllib
from pathlib import Path

import mathjax

ROOT = Path(__file__).resolve().parents[1]
SOURCE = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]["Source"]
REPOSITORY, _, PINNED_REF = SOURCE.partition("/tree/")  # <address> or <address>/tree/<tag or commit>
BRANCH = PINNED_REF or "main"
MATHJAX = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"  # MathJax 3.2.2

project = "DDPM from scratch"
author = "the ddpm-from-scratch authors"
copyright = "the ddpm-from-scratch authors; code MIT, prose and figures CC BY 4.0"
root_doc = "index"
extensions = ["myst_nb", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# --- notebooks: rendered from their committed outputs, never run ------------------------------------------------
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3  # papers/equation_map.md links notation.md#the-timestep-convention-read-this-first

# --- math: MathJax 3 from the installed django-static-mathjax (MathJax's own es5 build, no Django needed) --------
# Copied into _static/mathjax when the build finishes; never a CDN, never committed.
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {
    # an undefined command shows as a math error (the browser test counts them), not as red text
    "tex": {"packages": {"[-]": ["noundefined"]}},
}
# the TeX-to-HTML bundle, the TeX packages it autoloads on demand, and its web fonts
MATHJAX_PARTS = ["tex-chtml.js", "input/tex/extensions", "output/chtml/fonts/woff-v2"]


def copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(MATHJAX.parent / "LICENSE", target / "LICENSE")  # Apache-2.0
    for part in MATHJAX_PARTS:
        source = MATHJAX / part
        if source.is_dir():
            shutil.copytree(source, target / part, dirs_exist_ok=True)
        else:
            target.joinpath(part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / part)


def setup(app):
    app.connect("build-finished", copy_mathjax)


# --- the theme: navigation, search, launch buttons built from the one address ------------------------------------
html_theme = "sphinx_book_theme"
html_title = project
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_js_files = ["book.js"]
html_favicon = "_static/favicon.svg"  # also spares the browser a request for /favicon.ico, which the site lacks
html_last_updated_fmt = None
html_context = {"default_mode": "light"}  # pydata-sphinx-theme logs an error for the empty mode it stores otherwise
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": BRANCH,
    "path_to_docs": "notebooks",  # the staged notebooks sit at the book's root; in the repository under notebooks/
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {
        "binderhub_url": "https://mybinder.org",
        "colab_url": "https://colab.research.google.com",
        "notebook_interface": "jupyterlab",
    },
    "home_page_in_toc": True,
    "show_toc_level": 2,
}
