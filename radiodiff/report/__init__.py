"""Reports: the HTML/Markdown report of a finished pipeline run, from its outputs alone."""
