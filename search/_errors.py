"""Errors the command line reports in one line with exit code 2, shared by ``cli`` and the verbs' modules.

It lives apart from ``cli`` so that a verb's module can raise it without importing ``cli`` (which, run as
``python -m devicefit.search.cli``, is ``__main__``: a second import would make a second, uncaught class).
"""

from __future__ import annotations


class BadInput(ValueError):
    """Input the user can fix; reported in one line with exit code 2, before anything is written."""
