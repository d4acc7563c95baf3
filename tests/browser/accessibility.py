"""Accessibility checks run in the page: a language, a label for every form field, headings
that do not skip a level; and axe-core's whole rule set (``axe_violations``)."""

from typing import Any

# Returns a list of problems, empty when the page passes.
CHECK_PAGE = """
() => {
  const problems = [];
  if (!document.documentElement.getAttribute("lang")) problems.push("html has no lang");
  const fields = document.querySelectorAll(
    "input:not([type=hidden]):not([type=submit]):not([type=button]), select, textarea");
  for (const field of fields) {
    const named = (field.id && document.querySelector(`label[for="${CSS.escape(field.id)}"]`))
      || field.closest("label") || field.getAttribute("aria-label")
      || field.getAttribute("aria-labelledby");
    if (!named) problems.push(`no label: ${field.outerHTML.slice(0, 120)}`);
  }
  let previous = 0;
  for (const heading of document.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
    const level = Number(heading.tagName[1]);
    if (previous === 0 && level !== 1) problems.push(`first heading is ${heading.tagName}`);
    if (previous && level > previous + 1)
      problems.push(`heading skips h${previous + 1}: ${heading.textContent.trim()}`);
    previous = level;
  }
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  return problems;
}
"""


async def page_problems(page: Any) -> list[str]:
    problems: list[str] = await page.evaluate(CHECK_PAGE)
    return problems


async def axe_violations(page: Any) -> list[str]:
    """axe-core's violations on the page as it is now (the axe-core that the PyPI package
    axe-playwright-python ships; nothing is fetched), one line each: rule, impact, where."""
    from axe_playwright_python.async_playwright import Axe  # only where a browser runs

    results = await Axe().run(page)
    found: list[str] = []
    for violation in results.response.get("violations", []):
        targets = [", ".join(node.get("target", [])) for node in violation.get("nodes", [])]
        found.append(f"{violation['id']} ({violation.get('impact')}): {'; '.join(targets)[:300]}")
    return found
