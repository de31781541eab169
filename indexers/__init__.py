"""Vector index backends behind one small protocol (see indexers.base)."""
