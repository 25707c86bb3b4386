"""radiodiff: radio (path-loss) map prediction with RadioDiff, and the pipeline around it.

The library knows nothing of Snakemake or DVC: each pipeline stage calls one ``radiodiff``
CLI subcommand (see :mod:`radiodiff.cli` and :mod:`radiodiff.stages`).
"""

__version__ = "0.1.0"
