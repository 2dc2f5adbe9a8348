"""Recurrent cells: one step of one layer."""
