"""The record vocabulary every layer shares, and atomic file writes."""
