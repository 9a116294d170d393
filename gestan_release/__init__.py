"""gestan-release: the release-and-hotfix pipeline of the Gestan ERP."""

__version__ = "0.1.0"
