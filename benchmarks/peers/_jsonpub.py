"""The multi-channel JSON publisher's message format, shared by the Python peer servers: the
format of gogin's publisher WebSocket without ``?id=`` (docs/protocol.md)."""

import json


def _parse_item(item) -> tuple:
    """(error, channels, payload) of one JSON publish item."""
    if not isinstance(item, dict):
        return "each message is a JSON object", None, None
    ids = item.get("id")
    names = [ids] if isinstance(ids, str) else ids
    if (not names or not isinstance(names, list)
            or not all(isinstance(n, str) and n for n in names)):
        return "id must be a channel id or a list of them", None, None
    text = item.get("text")
    if not isinstance(text, str) or not text:
        return "text must be a non-empty string", None, None
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:   # lone surrogate escapes
        return "text is not valid Unicode", None, None
    return None, names, data


def publish_items(raw):
    """Yield (index, error, channels, payload) for each item of one publisher message: an
    object or an array of them.  error is None for a good item; a message that is not JSON
    yields one (0, "message is not JSON", None, None)."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        yield 0, "message is not JSON", None, None
        return
    for i, item in enumerate(doc if isinstance(doc, list) else (doc,)):
        yield (i,) + _parse_item(item)


def error_text(err: str, index: int) -> str:
    """The answer to a bad item: {"error": ..., "index": N}."""
    return json.dumps({"error": err, "index": index})
