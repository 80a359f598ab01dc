"""PRM scorers, one module per style (the style registry is `styles.py`), and step-score aggregation."""

from inference.scoring.loader import load_scorer
