"""Real headless Chromium driven over the Chrome DevTools Protocol (aiohttp websocket).

Debian's `chromium` package; a missing browser fails the test that needs it (the
dashboard's promise is that it renders in a real browser, so no browser is no proof).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.tools import required_tool

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1280,1600",
    # Numbers are written with the browser's locale: the tests read them as en-US does.
    "--lang=en-US",
)


# How long a browser asked to close gets before it is killed.
CLOSE_SECONDS = 10


def chromium_path() -> str:
    return required_tool("chromium", "chromium", "chromium-browser")


class Page:
    """One tab: send commands, collect events, evaluate JavaScript."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: str) -> None:
        self._ws = ws
        self.session = session
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message and message["id"] in self._pending:
            future = self._pending.pop(message["id"])
            if "error" in message:
                future.set_exception(RuntimeError(f"CDP error: {message['error']}"))
            else:
                future.set_result(message.get("result", {}))
        elif message.get("sessionId") == self.session:
            self.events.append(message)
            self._changed.set()

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message_id = 1_000_000 + next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._ws.send_json(
            {"id": message_id, "method": method, "params": params or {}, "sessionId": self.session}
        )
        return await asyncio.wait_for(future, 20)

    def named(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e.get("method") == method]

    async def wait_event(self, method: str, within: float = 15) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            found = self.named(method)
            if found:
                return found[-1]
            self._changed.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no {method} within {within}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def navigate(self, url: str) -> None:
        self.events.clear()
        await self.send("Page.navigate", {"url": url})
        await self.wait_event("Page.loadEventFired")

    async def open_offline(self, path: Path) -> None:
        """Open a file with the network off: a self-contained page must need nothing else."""
        await self.send(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
        await self.navigate(path.as_uri())

    async def reload(self) -> None:
        """A fresh load of the current address (a new document, the tab's storage kept)."""
        self.events.clear()
        await self.send("Page.reload", {"ignoreCache": True})
        await self.wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 15) -> Any:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {expression!r}; {self.problems()}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
        return path

    def problems(self) -> list[str]:
        """Script exceptions, console errors (CSP violations among them), failed loads."""
        found = [
            "exception: " + json.dumps(e["exceptionDetails"])[:500]
            for e in self.named("Runtime.exceptionThrown")
        ]
        found += [
            f"console {e['entry']['source']}: {e['entry']['text']}"
            for e in self.named("Log.entryAdded")
            if e["entry"]["level"] == "error"
        ]
        found += [
            f"failed load: {e.get('errorText')} ({e.get('blockedReason', '')})"
            for e in self.named("Network.loadingFailed")
        ]
        return found

    def requested_urls(self) -> list[str]:
        return [e["request"]["url"] for e in self.named("Network.requestWillBeSent")]


@contextlib.asynccontextmanager
async def chromium(user_data_dir: Path) -> AsyncIterator[Page]:
    """Start Chromium, open one tab with Page/Runtime/Network/Log events on, yield it."""
    closing = False
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [chromium_path(), *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        ws_url = await asyncio.wait_for(asyncio.to_thread(_devtools_url, proc), 30)
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
            page: Page | None = None
            browser_ids = itertools.count(1)
            browser_pending: dict[int, asyncio.Future[dict[str, Any]]] = {}

            async def browser_call(method: str, params: dict[str, Any]) -> dict[str, Any]:
                message_id = next(browser_ids)
                future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                browser_pending[message_id] = future
                await ws.send_json({"id": message_id, "method": method, "params": params})
                return await asyncio.wait_for(future, 20)

            async def read() -> None:
                async for msg in ws:
                    data = json.loads(msg.data)
                    if data.get("id") in browser_pending:
                        browser_pending.pop(data["id"]).set_result(data.get("result", {}))
                    elif page is not None:
                        page.dispatch(data)

            reader = asyncio.create_task(read())
            try:
                target = await browser_call("Target.createTarget", {"url": "about:blank"})
                attached = await browser_call(
                    "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
                )
                page = Page(ws, attached["sessionId"])
                for domain in ("Page", "Runtime", "Network", "Log"):
                    await page.send(f"{domain}.enable")
                yield page
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                # Closed as a user closes it, it removes what it made outside its profile
                # (its singleton socket's folder under /tmp); killed, it leaves that behind.
                with contextlib.suppress(Exception):
                    await ws.send_json({"id": next(browser_ids), "method": "Browser.close"})
                    closing = True
    finally:
        if closing:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, CLOSE_SECONDS)
        proc.kill()  # still running: it did not close in time, or was never asked to
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _devtools_url(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode(errors="replace")
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            # Keep reading stderr, or a chatty browser fills the pipe and stalls.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return match.group(1)
    raise RuntimeError(f"chromium exited ({proc.wait()}) without a DevTools URL")
