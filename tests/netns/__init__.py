"""Tests that need network namespaces (marked ``netns``)."""
