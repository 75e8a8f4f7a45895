"""A corpus of malformed and hostile model releases (see README.md), built by make_corpus.py."""
