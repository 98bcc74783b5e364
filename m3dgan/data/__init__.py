"""Data: the on-disk format of built data sets, builders made offline from real material,
readers for published formats, and fetchers for users with internet."""
