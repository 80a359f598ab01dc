"""Unit tests of the search strategies and their test fakes."""
