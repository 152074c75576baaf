"""Docstrings as plain text: the one-sentence summaries ``restore list`` shows.

:func:`summary` takes the first paragraph of a docstring, removes the reStructuredText
inline markup (roles, literals, emphasis, links) and keeps its first sentence.
"""
from __future__ import annotations

import inspect
import re

#: Roles whose target is a dotted Python name, shown by its last component as Sphinx's
#: ``~`` prefix would (``:class:`a.b.C``` -> ``C``); other roles show their content.
_NAME_ROLES = ("class", "func", "meth", "attr", "data", "exc", "obj", "const", "type")

_ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<body>[^`]+)`")
_LITERAL = re.compile(r"``(?P<body>.+?)``")
_LINK = re.compile(r"`(?P<body>[^`<]+?)\s*<[^`>]+>`__?")
_INTERPRETED = re.compile(r"`(?P<body>[^`]+)`_{0,2}")
_STRONG = re.compile(r"(?<![\w*])\*\*(?=\S)(?P<body>.+?)(?<=\S)\*\*(?![\w*])")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)(?P<body>[^*]+?)(?<=\S)\*(?![\w*])")
#: A full stop, ! or ? followed by white space or the end.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
#: Words whose full stop ends an abbreviation, not a sentence (compared in lower case).
_ABBREVIATIONS = {"e.g", "i.e", "al", "cf", "eq", "eqs", "sec", "fig", "alg", "app", "vs", "resp", "approx"}


def _role(match: re.Match) -> str:
    role, body = match["role"], match["body"]
    titled = re.fullmatch(r"(?P<title>.+?)\s*<[^>]+>", body)
    if titled:
        return titled["title"]
    if role in _NAME_ROLES:
        return body.lstrip("~").rsplit(".", 1)[-1]
    return body.lstrip("~")


def plain(text: str) -> str:
    """``text`` with reST inline markup removed: roles (``:class:`a.b.C``` -> ``C``, titled
    ones by their title), ``literals``, links, *emphasis*, **strong**; ``::`` -> ``:``."""
    # literals may hold anything (roles, backquotes); set them aside before the other rules
    literals: list[str] = []

    def keep(match: re.Match) -> str:
        literals.append(match["body"])
        return f"\0{len(literals) - 1}\0"

    text = _LITERAL.sub(keep, text)
    text = _ROLE.sub(_role, text)
    text = _LINK.sub(lambda m: m["body"], text)
    text = _INTERPRETED.sub(lambda m: m["body"], text)
    text = _STRONG.sub(lambda m: m["body"], text)
    text = _EMPHASIS.sub(lambda m: m["body"], text)
    text = re.sub(r"\s*::(?=\s|$)", ":", text)
    return re.sub(r"\0(\d+)\0", lambda m: literals[int(m[1])], text)


def first_sentence(text: str) -> str:
    """The text up to and including its first full stop, ! or ? followed by white space or
    the end, except the full stop of an abbreviation (e.g., et al., Eq., Sec.)."""
    for match in _SENTENCE_END.finditer(text):
        word = re.search(r"([\w.]*)$", text[: match.start()])[1].lower()
        if match[0] == "." and word in _ABBREVIATIONS:
            continue
        return text[: match.end()]
    return text


def summary(doc: str | None) -> str:
    """The first sentence of the first paragraph of ``doc`` as one line of plain text."""
    paragraph = inspect.cleandoc(doc or "").split("\n\n", 1)[0]
    return plain(first_sentence(" ".join(paragraph.split())))
