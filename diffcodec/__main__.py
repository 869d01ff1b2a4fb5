"""``python -m diffcodec``: the command line, as the ``diffcodec`` script."""

from .cli import main

main(prog_name="diffcodec")
