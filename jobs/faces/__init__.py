"""Faces: model packs (resolution, identity, generated test pack) and the embed job."""
