"""The one place where devicefit imports Paddle.

On CPython 3.11 with Paddle 2.6.2, importing ``paddle`` before the first use of ``zlib`` breaks zlib for the
rest of the process ("inconsistent stream state"; ``import paddleslim`` then dies with SIGSEGV in
``inflateReset2``). Importing zlib first avoids it, so every module that needs Paddle calls
:func:`import_paddle` instead of writing ``import paddle``, and every entry point (CLI, tests, benches)
goes through here. Importing this module does not import Paddle: the CLI's ``--help`` stays instant.
"""

from __future__ import annotations

import os
import types


def import_paddle() -> types.ModuleType:
    """Import Paddle safely and return the ``paddle`` module.

    Also quietens Paddle's C++ logging (``GLOG_minloglevel``) unless the user set it.
    """
    import zlib  # noqa: F401  (must precede paddle; see the module docstring)

    import numpy  # noqa: F401  (likewise: numpy and scikit-learn before paddle was seen to be safe)

    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("FLAGS_call_stack_level", "0")
    import paddle

    return paddle


def import_paddleslim() -> types.ModuleType:
    """Import PaddleSlim after Paddle (through :func:`import_paddle`)."""
    import_paddle()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import paddleslim

    return paddleslim
