"""A film's MovieChat memory: short-term frames, consolidation, long-term memory."""
