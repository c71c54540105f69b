"""docs/clients.md's examples, run as written against a real `gogin-server --demo`: the
Python one in a subprocess, the HTML one in headless Chromium (served from gogin's origin)."""

import asyncio
import os
import re
import sys

import aiohttp
import pytest

from demo_process import ROOT, T, DemoProcess, chromium

DOC = os.path.join(ROOT, "docs", "clients.md")


def example(marker: str, lang: str) -> str:
    with open(DOC, encoding="utf-8") as fh:
        text = fh.read()
    m = re.search(r"<!-- " + marker + r"[^>]*-->\s*```" + lang + r"\n(.*?)\n```", text, re.S)
    assert m, f"no {marker} example in docs/clients.md"
    return m.group(1)


@pytest.fixture(scope="module")
def demo():
    d = DemoProcess()
    try:
        yield d
    finally:
        d.stop()


async def test_python_example(demo):
    code = example("clients-example-python", "python")
    assert '"http://127.0.0.1:9080"' in code
    code = code.replace("http://127.0.0.1:9080", demo.base)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), T)).decode()
        # it published "hello" to room, then got it back (history=10)
        assert re.fullmatch(r"room 1 \w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT hello\n", line), line
    finally:
        proc.kill()
        await asyncio.wait_for(proc.wait(), T)


async def test_html_example(demo):
    html = example("clients-example-html", "html")
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{demo.main}/login", data={"user": "alice"},
                          allow_redirects=False) as r:
            token = r.cookies["gogin_demo_session"].value
    async with chromium() as ctx:
        await ctx.add_cookies([{"name": "gogin_demo_session", "value": token,
                                "domain": "127.0.0.1", "path": "/"}])
        page = ctx.pages[0] if ctx.pages else await ctx.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # the example page as if the application served it next to gogin: a document of
        # gogin's origin, rewritten (a page.route() answer is no loopback document, and
        # Chromium's local network access checks would then block its WebSocket)
        await page.goto(demo.base + "/healthz")
        await page.set_content(html)
        assert page.url == demo.base + "/healthz"
        from playwright.async_api import expect
        await expect(page.locator("#status")).to_have_text("open (websocket)", timeout=T * 1000)
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{demo.base}/pub?id=team.red", data=b"hi team",
                              headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 200
        await expect(page.locator("#feed li").first).to_have_text("team.red: hi team",
                                                                 timeout=T * 1000)
        assert errors == []
