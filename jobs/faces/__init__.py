"""Faces: model packs, the generated test pack, the worker runtime (detect, align, embed) and the embed job."""
