"""What a person reads in an HTML email, for tests that assert an email whole: the visible
text of the body, one line per block (heading, paragraph, table row), the cells of a row between
bars, a link's address after its words, whitespace collapsed. The hidden preheader is left out
(it is asserted on its own where it matters)."""

from __future__ import annotations

from html.parser import HTMLParser

BLOCKS = {"p", "h1", "h2", "div", "table", "tr", "br", "li"}
HIDDEN = {"head", "style", "script"}


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line: list[str] = []
        self.hidden = 0
        self.depth_hidden: list[bool] = []
        self.href: list[str | None] = []

    def _flush(self) -> None:
        text = " ".join("".join(self.line).split())
        if text.replace("|", "").strip():  # a layout table's row around the card is no line
            self.lines.append(text)
        self.line = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        style = (dict(attrs).get("style") or "").replace(" ", "")
        if tag in HIDDEN or (tag == "div" and "display:none" in style):
            self.hidden += 1
            self.depth_hidden.append(True)
            return
        if tag == "div":
            self.depth_hidden.append(False)
        if self.hidden:
            return
        if tag in BLOCKS:
            self._flush()
        if tag == "tr":
            self.line.append("| ")
        if tag == "a":
            self.href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in HIDDEN or tag == "div":
            if tag in HIDDEN or (self.depth_hidden and self.depth_hidden.pop()):
                self.hidden -= 1
                return
        if self.hidden:
            return
        if tag in ("td", "th"):
            self.line.append(" | ")
        if tag == "a" and self.href:
            href = self.href.pop()
            if href and href not in "".join(self.line):
                self.line.append(f" <{href}>")
        if tag in BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.line.append(data)


def visible_text(html: str) -> str:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    reader._flush()
    return "\n".join(reader.lines)
