"""Benchmarks and reports. The modules here are the main reports, one command each
(``python -m benchmarks.NAME``), which write a CompressAI-style JSON, a PNG plot and a Markdown
report into ``benchmarks/results/<dataset>/``. ``common`` holds what they share, ``studies`` the
one-off measurements behind particular design choices, ``gpu`` what only a GPU session measures."""
