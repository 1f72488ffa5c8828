"""The pages' one blueprint: every route of the list, the task page and the embed is on it,
so their endpoints are `pages.<view>` whichever module defines the view."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("pages", __name__)
