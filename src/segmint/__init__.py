"""segmint: from raw customer data to measured, personalized marketing."""

from segmint.config import Config, load_config
from segmint.errors import SegmintError
from segmint.project import Project, open_project

__version__ = "0.1.0"
version = __version__

__all__ = ["Config", "Project", "SegmintError", "load_config", "open_project", "version"]
