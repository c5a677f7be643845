"""Sphinx extension: the C API reference, generated from include/gilfree.h.

``.. gilfree-c-header::`` (an RST directive: in a MyST page, inside ``{eval-rst}``) reads the
public header (``gilfree_header`` in conf.py) and renders it section by section, in the
header's own order and words:

* a banner comment (three comment lines: rule, title, rule) starts a section, and a
  ``/* -- title ---- */`` line a subsection;
* every ``GF_EXTERN`` prototype becomes a ``c:function`` entry (an index entry and an anchor),
  described by the comment just before it (the header states each function's result and
  failures there), shown as written, never parsed as markup;
* everything else (types, enums, macros, inline helpers, with their comments) is shown as a C
  listing, so nothing in the header is left out of the page.

The header is the single source: when it changes, the page changes with it.
"""

import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

_RULE = re.compile(r"^/\* -{20,} \*/$")
_TITLE = re.compile(r"^/\* (.*?)\s*\*/$")
_SUB = re.compile(r"^/\* -- (.*?) -+ \*/$")
_PROTO = re.compile(r"GF_EXTERN\s+(.*?\))\s*;", re.S)


def _comment_text(block):
    """The text of a /* ... */ comment block, without the comment markers."""
    lines = block.strip().splitlines()
    out = []
    for i, line in enumerate(lines):
        line = line.strip()
        if i == 0:
            line = line[2:]
        if line.endswith("*/"):
            line = line[:-2]
        if line.startswith("*") and i > 0:
            line = line[1:]
        out.append(line.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    # keep relative indentation (lists of parameters), drop the common one-space lead
    lead = min((len(x) - len(x.lstrip()) for x in out if x.strip()), default=0)
    return "\n".join(x[lead:] for x in out)


def _items(text):
    """Split a section's text into ('comment', text) / ('proto', decl) / ('code', text), by
    lines: a comment or a GF_EXTERN prototype starts at the beginning of a line outside any
    braces; code runs to a blank line or to the next comment / prototype (comments inside a
    struct or enum body, and at the end of a code line, belong to the code)."""
    lines = text.splitlines()
    items = []
    i, n = 0, len(lines)
    while i < n:
        s = lines[i].strip()
        if not s:
            i += 1
            continue
        if s.startswith("/*"):
            j = i
            while "*/" not in lines[j]:
                j += 1
            items.append(("comment", "\n".join(lines[i:j + 1])))
        elif s.startswith("GF_EXTERN"):
            j = i
            while not lines[j].rstrip().endswith(";"):
                j += 1
            decl = " ".join(" ".join(lines[i:j + 1]).split())
            m = _PROTO.match(decl)
            if m:
                items.append(("proto", m.group(1)))
            else:  # not a function (an exported variable, say): shown as declared
                items.append(("code", "\n".join(lines[i:j + 1])))
        else:
            j, depth = i, 0
            while True:
                depth += lines[j].count("{") - lines[j].count("}")
                if depth <= 0 and not lines[j].rstrip().endswith("\\"):
                    nxt = lines[j + 1].strip() if j + 1 < n else ""
                    if not nxt or nxt.startswith(("/*", "GF_EXTERN")):
                        break
                j += 1
                if j >= n:
                    j = n - 1
                    break
            items.append(("code", "\n".join(lines[i:j + 1])))
        i = j + 1
    return items


def _sections(header):
    """[(title, level, text)] for the header's banner sections and '-- sub --' subsections."""
    lines = header.splitlines()
    out = [("", 0, [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        if _RULE.match(line) and i + 2 < len(lines) and _RULE.match(lines[i + 2]):
            out.append((_TITLE.match(lines[i + 1]).group(1), 2, []))
            i += 3
            continue
        m = _SUB.match(line)
        if m:
            out.append((m.group(1), 3, []))
            i += 1
            continue
        out[-1][2].append(line)
        i += 1
    return [(t, lvl, "\n".join(body)) for t, lvl, body in out]


class GilfreeCHeader(SphinxDirective):
    """``.. gilfree-c-header::``: every declaration of include/gilfree.h, by section."""

    has_content = False

    def _listing(self, code):
        code = code.strip("\n")
        return nodes.literal_block(code, code, language="c")

    def _describe(self, comment):
        text = _comment_text(comment)
        if "\n " in text or "\n\n" in text:  # laid out (lists, indented parameters): as is
            return nodes.literal_block(text, text, classes=["gf-comment"])
        return nodes.paragraph(text, " ".join(text.split()))

    def _function(self, proto, comment):
        src = self.get_source_info()[0]
        holder = nodes.container()
        self.state.nested_parse(StringList([".. c:function:: " + proto], source=src), 0, holder)
        if comment is not None:
            for desc in holder.findall(addnodes.desc):
                for content in desc.findall(addnodes.desc_content):
                    content += self._describe(comment)
                    break
                break
        return holder.children

    def _render(self, text):
        body = []
        pending = None  # a comment waiting for what it describes
        for kind, chunk in _items(text):
            if kind == "comment":
                if pending is not None:
                    body.append(self._describe(pending))
                pending = chunk
            elif kind == "proto":
                body.extend(self._function(chunk, pending))
                pending = None
            else:
                if pending is not None:
                    chunk = pending + "\n" + chunk
                    pending = None
                if chunk.strip():
                    body.append(self._listing(chunk))
        if pending is not None:
            body.append(self._describe(pending))
        return body

    def run(self):
        path = self.config.gilfree_header
        self.env.note_dependency(path)
        with open(path, encoding="utf-8") as f:
            header = f.read()
        start = header.find("#ifdef __cplusplus")
        end = header.rfind("#ifdef __cplusplus")
        preamble, body = header[:start], header[start:end]
        body = body.split("\n", 3)[-1]  # drop the extern "C" opening
        result = [self._listing(preamble)]
        parent = None
        for title, level, text in _sections(body):
            if not title:
                result.extend(self._render(text))
                continue
            sec = nodes.section(ids=[nodes.make_id("c-" + title)],
                                names=[nodes.fully_normalize_name(title)])
            sec += nodes.title(title, title)
            sec.extend(self._render(text))
            if level == 2 or parent is None:
                result.append(sec)
                parent = sec
            else:
                parent += sec
        return result


def setup(app):
    app.add_config_value("gilfree_header", "", "env")
    app.add_directive("gilfree-c-header", GilfreeCHeader)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
