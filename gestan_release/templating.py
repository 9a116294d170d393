"""Jinja2 rendering of every text a human reads: changelogs, posts, mails (French by default).

Templates live in `gestan_release/templates/`; `.html.j2` templates are autoescaped, the others
are plain text or markdown where user-supplied text goes through the `md` filter.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).parent / "templates"

# Characters that change the meaning of markdown (CommonMark) or let HTML through.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


def md_escape(text: object) -> str:
    """Escape user text (a ticket title) so that no markdown or HTML in it changes the post."""
    flat = " ".join(str(text).split())  # no line breaks: a title cannot open a new block
    return _MD_SPECIAL.sub(r"\\\1", flat)


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
    env.filters.update(md=md_escape, short=short_sha, date_fr=french_date)
    return env


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
