"""ttc's inference arm: generation backends, PRM scorers, search strategies, evaluation and reports."""
