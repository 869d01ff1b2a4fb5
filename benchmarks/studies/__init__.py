"""One-off measurements (``python -m benchmarks.studies.NAME``): each answers one question
behind a design choice of the codec (channel overhead, scorers' speed, precision, tiling,
selection rules, cost model, side information, target landing) and is rerun only when that
choice is revisited, unlike the main reports in ``benchmarks/``."""
