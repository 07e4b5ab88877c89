"""axe-core in the browser tests: the accessibility rules run on a page, from
the copy of axe.min.js that the PyPI package axe-playwright-python bundles (no
CDN). Evaluated through Playwright, so the page's Content-Security-Policy does
not stop it."""

from axe_playwright_python.sync_playwright import Axe

SERIOUS = ("serious", "critical")
_axe = Axe()


def serious_violations(page) -> list:
    """The serious and critical violations on ``page``, each as
    ``{"id", "impact", "help", "targets"}`` so a failing assert says where."""
    found = _axe.run(page).response["violations"]
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "targets": [node["target"] for node in v["nodes"]][:5]}
            for v in found if v["impact"] in SERIOUS]
