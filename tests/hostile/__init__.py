"""Hostile and broken input: each test builds one crafted or damaged input and checks the outcome (no file
outside the output folder, counts that match, a payload that never runs, a process that ends, a one-line error)."""
