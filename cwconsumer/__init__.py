"""cwconsumer: read every event of CloudWatch Logs groups and ship it over HTTP.

Checkpoints move only after the sink has confirmed delivery; see README.md.
"""

__version__ = "0.1.0"
