"""MkDocs hook: turn the Sphinx roles of swinkit's docstrings into links of the API reference.

The docstrings name other objects the Sphinx way (``:func:`create_model```), which Markdown
renders as the role's text followed by code. This hook replaces each such role with a
cross-reference that mkdocs-autorefs resolves: the target as written when it is a full path,
else the one object of the package whose path ends with it (preferring the modules documented
on the same page). A target that names no documented object stays plain code, without the role.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.pages import Page

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):<code>(?P<target>[^<]+)</code>")
DIRECTIVE = re.compile(r"^:::\s*(?P<module>[\w.]+)", flags=re.MULTILINE)

_paths: list[str] = []


def _walk(obj: griffe.Object) -> Iterator[str]:
    yield obj.path
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def on_config(config: MkDocsConfig, **kwargs: object) -> MkDocsConfig:
    """Collect the path of every object swinkit defines, read statically from ``src`` next to mkdocs.yml."""
    source = Path(config.config_file_path).parent / "src"
    package = griffe.load("swinkit", search_paths=[str(source)], resolve_aliases=False)
    _paths[:] = sorted(set(_walk(package)))
    return config


def resolve(target: str, page_modules: list[str]) -> str | None:
    """The full path a role's target names, or None when it names no object (or several)."""
    if target in _paths:
        return target
    candidates = [path for path in _paths if path.endswith("." + target)]
    near = [path for path in candidates if any(path.startswith(module + ".") for module in page_modules)]
    for group in (near, candidates):
        if len(group) == 1:
            return group[0]
    return None


def on_page_content(html_text: str, page: Page, **kwargs: object) -> str:
    """Replace the roles in the rendered page by optional cross-references."""
    page_modules = DIRECTIVE.findall(page.markdown or "")

    def replace(match: re.Match[str]) -> str:
        written = html.unescape(match["target"]).strip()
        shown = written.removeprefix("~").rsplit(".", 1)[-1] if written.startswith("~") else written
        target = written.removeprefix("~").removesuffix("()")
        path = resolve(target, page_modules)
        code = f"<code>{html.escape(shown)}</code>"
        if path is None:
            return code
        return f'<autoref identifier="{path}" optional>{code}</autoref>'

    return ROLE.sub(replace, html_text)
