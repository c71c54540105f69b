"""The resume rules of both clients, on the same cases: gogin.client's Resume and gogin.js
(in headless Chromium) must agree.  A message is what gogin's default template renders; the
position a client resumes from is shared by its channels (docs/clients.md), so replays carry
messages it had, and gap signals about messages it had."""

import email.utils
import json
import os

import pytest

from demo_process import chromium
from gogin.client import Gap, Position, Resume, parse

T = 1796000000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def frame(id_, t, tag, text="", channel="c"):
    return json.dumps({"id": id_, "channel": channel, "text": text, "tag": str(tag),
                       "time": email.utils.formatdate(t, usegmt=True), "eventid": ""})


GAP = "Messages were lost."

# (name, frames received after resuming from c = id 5 at (T, tag 2), what is delivered)
CASES = [
    ("replayed messages already had are dropped",
     [frame(4, T, 1), frame(5, T, 2), frame(6, T, 3)], [6]),
    ("a gap dated at or before our position is about messages we had",
     [frame(-4, T, 1, GAP), frame(6, T, 3)], [6]),
    ("a gap after our position is real",
     [frame(-4, T + 1, 3, GAP), frame(10, T + 1, 4)], ["gap", 10]),
    ("a gap at tag -1 followed by the next id: nothing was lost",
     [frame(-4, T + 1, -1, GAP), frame(6, T + 1, 0)], [6]),
    ("a gap at tag -1 followed by a later id: lost",
     [frame(-4, T + 1, -1, GAP), frame(9, T + 1, 0)], ["gap", 9]),
    ("pings and long-poll timeouts are no messages",
     [frame(-1, T + 1, 0), frame(-3, T, 2), frame(6, T, 3)], [6]),
    ("another channel's messages are not compared with ours",
     [frame(1, T - 100, 0, channel="d"), frame(6, T, 3)], [("d", 1), 6]),
]


def label(item):
    if isinstance(item, Gap):
        return "gap"
    return item.id if item.channel == "c" else (item.channel, item.id)


@pytest.mark.parametrize("name,frames,expected", CASES, ids=[c[0] for c in CASES])
def test_python_resume(name, frames, expected):
    r = Resume(["c", "d"], {"c": Position(5, T, 2)})
    got = [label(item) for f in frames for item in r.accept(parse(f))]
    assert got == expected


async def test_gogin_js_agrees():
    with open(os.path.join(ROOT, "gogin", "static", "gogin.js")) as fh:
        source = fh.read()
    async with chromium() as ctx:
        page = ctx.pages[0] if ctx.pages else await ctx.new_page()
        await page.add_script_tag(content=source)
        for name, frames, expected in CASES:
            got = await page.evaluate("""([frames, T]) => {
                const out = [];
                const c = new GoginClient({connect: false, channels: ["c", "d"],
                  positions: {c: {id: 5, time: T, tag: 2, eventid: null}},
                  onmessage: (m) => out.push(m.channel === "c" ? m.id : [m.channel, m.id]),
                  ongap: () => out.push("gap")});
                for (const f of frames) c._frame(f);
                return out;
            }""", [frames, T])
            assert [tuple(x) if isinstance(x, list) else x for x in got] == expected, name
