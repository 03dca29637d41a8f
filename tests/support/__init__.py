"""Helpers shared by the tests: process trees, slow steps, subprocess commands."""
