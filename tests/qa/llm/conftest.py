"""The tiny-model fixtures live in tests/conftest.py: web tests use them too."""
