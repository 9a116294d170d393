"""Jinja2 rendering of every text a human reads: changelogs, posts, mails (French by default).

Templates live in `gestan_release/text/templates/`; `.html.j2` templates are autoescaped, the others
are plain text or markdown where data goes through a filter that escapes it for where it lands:
`md` (user text in markdown), `link_url` (a URL as a link destination: http(s) only, characters
that could close the link percent-encoded, else no link at all), `md_dest` (the same for a URL
already checked), `code` (an inline code span that no backtick inside can close).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

TEMPLATE_DIR = Path(__file__).parent / "templates"

# Characters that change the meaning of markdown (CommonMark) or let HTML through.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


def md_escape(text: object) -> str:
    """Escape user text (a ticket title) so that no markdown or HTML in it changes the post."""
    flat = " ".join(str(text).split())  # no line breaks: a title cannot open a new block
    return _MD_SPECIAL.sub(r"\\\1", flat)


# Characters a markdown link destination or an href must not carry raw.
_URL_UNSAFE = re.compile(r"[\s()<>\"'\\`\[\]]")


def safe_url(
    url: object, schemes: tuple[str, ...] = ("http", "https"), host: str | None = None
) -> str | None:
    """`url` if its scheme is one of `schemes` (and, given `host`, it is on that host), with the
    characters that would break a markdown link or an HTML attribute percent-encoded; None
    otherwise — no `javascript:` or foreign link from the store ever becomes a link."""
    if not url or not isinstance(url, str):
        return None
    from gestan_release.core.validation import is_clean

    url = url.strip()
    if not is_clean(url):
        return None
    try:
        parts = urlsplit(url)
        hostname = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme.lower() not in schemes:
        return None
    if host is not None and hostname != host.lower():
        return None
    return _URL_UNSAFE.sub(lambda m: quote(m.group(0), safe=""), url)


def link_url(url: object) -> str | None:
    """Filter: an http(s) URL safe as a markdown link destination, or None (render no link)."""
    return md_dest(safe_url(url))


def md_dest(url: str | None) -> str | None:
    """Filter: an URL already made safe (`safe_url`) as a markdown link destination: `&` is
    backslash-escaped, or a renderer would decode `&lt;` and the like in it."""
    return None if url is None else url.replace("&", "\\&")


def inline_code(text: object) -> str:
    """Filter: `text` as an inline code span whose delimiters no backtick run inside can match."""
    flat = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    bar = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{bar}{pad}{flat}{pad}{bar}"


def short_sha(sha: str) -> str:
    return sha[:10]


def french_date(value: Any) -> str:
    return value.strftime("%d/%m/%Y")


@lru_cache(maxsize=1)
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        md=md_escape,
        short=short_sha,
        date_fr=french_date,
        link_url=link_url,
        md_dest=md_dest,
        code=inline_code,
    )
    return env


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
