"""What the benchmarks share and do not run on their own: evaluation images, metrics, the
report files and their provenance, the bound, BD-rate, Pillow's codecs, decoding real files'
prefixes, and the paper's figures; kept apart so that ``benchmarks/`` lists only commands."""
