"""Tables, figures and interactive viewers. Every figure and table is saved explicitly (atomic)."""
