"""Render a directory listing as HTML (names, sizes, dates), the way web servers do."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from aiohttp import web

from pulp_content.service.headers import http_date
from pulp_content.service.types import Listing


def render_listing(listing: Listing) -> web.Response:
    title = escape(listing.path)
    rows = ['<tr><td><a href="../">../</a></td><td></td><td></td></tr>']
    for entry in listing.entries:
        name = entry.name + ("/" if entry.is_dir else "")
        size = "-" if entry.size is None else str(entry.size)
        date = http_date(entry.modified) if entry.modified else "-"
        rows.append(
            f'<tr><td><a href="{quote(name)}">{escape(name)}</a></td>'
            f"<td>{escape(date)}</td><td>{size}</td></tr>"
        )
    body = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n"
        "<table><tr><th>Name</th><th>Last modified</th><th>Size</th></tr>\n"
        + "\n".join(rows)
        + "\n</table></body></html>\n"
    )
    return web.Response(text=body, content_type="text/html", charset="utf-8")
