"""PRM scorers (token-classification, +/- chat, step-tag styles) and step-score aggregation."""

from inference.scoring.loader import load_scorer
