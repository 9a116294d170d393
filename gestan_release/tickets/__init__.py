"""Tickets: the values, their fields checked, import files, the store and its fast read path."""
