"""ttc's base layer: the step format, problem and label records, answer grading, benchmarks and the synthetic world."""
