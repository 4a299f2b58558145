"""Accessibility and layout checks run inside real Chromium: axe-core for WCAG 2.1 A/AA, and reflow.

axe-core comes from npm, pinned in tests/e2e/package.json and package-lock.json (`npm ci --prefix
tests/e2e`, which CI runs and the `axe_script` fixture runs when it is missing). Playwright injects
its axe.min.js into the page under test; nothing of it is served by the site.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
AXE_SCRIPT = HERE / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# Widths of the layout checks: a desktop, a phone, and WCAG 1.4.10's reflow width (320 CSS px).
DESKTOP, PHONE, REFLOW = 1280, 390, 320


def install_axe() -> str | None:
    """Make sure axe.min.js is there (npm ci from the lock file); None, or why it cannot be."""
    if AXE_SCRIPT.is_file():
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed (apt-get install npm), so axe-core cannot be installed"
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE,
                            capture_output=True, text=True, timeout=180, env={**os.environ, "CI": "true"})
    if result.returncode != 0 or not AXE_SCRIPT.is_file():
        return f"npm ci in {HERE} failed: {result.stderr.strip()[-500:]}"
    return None


def axe_violations(page: Any, *, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now (each with its nodes)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_SCRIPT))
    return page.evaluate(
        """async ([tags, exclude]) => {
          const context = exclude.length ? { include: [document], exclude: exclude.map((s) => [s]) } : document;
          const options = { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] };
          const result = await window.axe.run(context, options);
          return result.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
          }));
        }""",
        [WCAG_TAGS, list(exclude)],
    )


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:6]:
            lines.append(f"    {node['target']}: {(node['summary'] or '').splitlines()[-1:]}")
    return "\n".join(lines)


def overflow(page: Any) -> dict[str, Any] | None:
    """None when nothing scrolls sideways; else the page's widths and the elements that stick out."""
    return page.evaluate(
        """() => {
          const root = document.documentElement;
          const width = root.clientWidth;
          if (root.scrollWidth <= width && document.body.scrollWidth <= width) return null;
          const wide = [];
          for (const el of document.body.querySelectorAll("*")) {
            const box = el.getBoundingClientRect();
            if (box.width && box.right > width + 1) {
              const name = `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}.${[...el.classList].join(".")}`;
              wide.push(`${name} right=${Math.round(box.right)}`);
            }
          }
          return { viewport: width, scrollWidth: root.scrollWidth, elements: wide.slice(0, 12) };
        }"""
    )


def check_page(page: Any, name: str, *, widths: tuple[int, ...] = (DESKTOP, PHONE, REFLOW),
               axe_widths: tuple[int, ...] = (DESKTOP, REFLOW), exclude: tuple[str, ...] = ()) -> list[str]:
    """Audit the page at each width: sideways scrolling, and WCAG violations at `axe_widths`. Problems found."""
    problems = []
    original = page.viewport_size
    try:
        for width in widths:
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(50)  # layout settles (media queries, wrapping)
            wide = overflow(page)
            if wide:
                problems.append(f"{name} at {width} px scrolls sideways: {wide}")
            if width in axe_widths:
                found = axe_violations(page, exclude=exclude)
                if found:
                    problems.append(f"{name} at {width} px, WCAG 2.1 A/AA violations:\n{describe(found)}")
    finally:
        if original:
            page.set_viewport_size(original)
    return problems
