# Thin aliases for ./dev, which does the real work (and needs no make).
.PHONY: demo test lint bench setup
demo test lint bench setup:
	./dev $@
