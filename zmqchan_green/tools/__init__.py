"""The command-line tools of ``python -m zmqchan_green``: ``demo``, ``bench`` and ``soak``.

Each tool registers its subcommand on the package's parser (see
``zmqchan_green/__main__.py``). The tools use the library through its public
names (and, for typing only, the ``Frame`` alias of ``zmqchan_green._checks``).
Their own Python modules are not part of the library's API; their command
lines and output formats are.
"""

from __future__ import annotations

from .bench import add_bench_command
from .demo import add_demo_command
from .soak import add_soak_command

__all__ = ["add_bench_command", "add_demo_command", "add_soak_command"]
