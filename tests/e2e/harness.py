"""One test's handle on the running system: pages in fresh browser contexts, the emulator, the site."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest

from tests.e2e.servers import ARTIFACTS, Emulator, Site

DEFAULT_TIMEOUT_MS = 15_000
# Set by the e2e conftest's report hook: did the test body fail? (then its pages are saved)
CALL_FAILED = pytest.StashKey[bool]()


class Harness:
    """One test's view of the system: pages in fresh browser contexts, the emulator, the site."""

    def __init__(self, site: Site, emulator: Emulator, browser: Any, node: pytest.Item) -> None:
        self.site, self.emulator, self.browser, self.node = site, emulator, browser, node
        self.contexts: list[Any] = []
        self.pages: list[tuple[str, Any]] = []
        self.console: list[str] = []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def new_page(self, label: str, *, init_scripts: tuple[str, ...] = ()) -> Any:
        """A page in its own browser context (its own cookies: one person each)."""
        from tests.e2e.pages import INSTRUMENT_WEBRTC

        context = self.browser.new_context(base_url=self.site.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        context.add_init_script(INSTRUMENT_WEBRTC)
        for script in init_scripts:
            context.add_init_script(script)
        self.contexts.append(context)
        page = context.new_page()
        page.on("console", lambda msg: self.console.append(f"[{label}] {msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"[{label}] pageerror: {exc}"))
        self.pages.append((label, page))
        return page

    def screenshot(self, page: Any, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        if self.node.stash.get(CALL_FAILED, False):
            folder = ARTIFACTS / "failures"
            folder.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.node.name)
            for label, page in self.pages:
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(folder / f"{stem}-{label}.png"), full_page=True)
                with contextlib.suppress(Exception):
                    self.console.append(f"[{label}] e2e log: {page.evaluate('window.__e2e && window.__e2e.log')}")
            (folder / f"{stem}-console.log").write_text("\n".join(self.console))
        for context in self.contexts:
            with contextlib.suppress(Exception):
                context.close()
