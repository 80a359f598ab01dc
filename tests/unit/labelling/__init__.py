"""Tests of the `ttc-infer` command: config, result files, runner, CLI."""
