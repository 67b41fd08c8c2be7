"""Figures of the suite: one palette, spread, captions, and each picture the reports draw."""
