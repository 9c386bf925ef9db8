"""MovieChat Desktop: a video player with an assistant that has watched the film with you."""

__version__ = "0.1.0"
