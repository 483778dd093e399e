"""Parsing of log messages into document fields (pure: no I/O, nothing async).

- :mod:`.lambda_`: AWS Lambda platform and runtime lines -> ``aws.lambda`` fields
  and a log level (text lines and the Lambda JSON log format).
- :mod:`.jsonmsg`: a message that is a JSON object -> the document's ``json`` field.

Every function here is total: any input string gives a result or ``None``,
never an exception, so one odd log line can never stop a stream.
"""

from cwconsumer.parsing.jsonmsg import MAX_DEPTH, parse_object
from cwconsumer.parsing.lambda_ import FIRST_CHARS, LambdaLine, parse_json, parse_text

__all__ = ["FIRST_CHARS", "MAX_DEPTH", "LambdaLine", "parse_json", "parse_object", "parse_text"]
