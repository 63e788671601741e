"""Advanced Mobile Location (ETSI TS 103 625): the location a phone sends by itself.

A pure parser (``gateways.aml.parse``) with no I/O; the SMS gateway uses it to recognise
an AML SMS. See ``../shared/data/aml/README.md`` for the field reference it follows.
"""

from gateways.aml.parse import (
    AmlError,
    AmlMessage,
    parse_aml_https,
    parse_aml_query_response,
    parse_aml_sms,
    verify_aml_https_hmac,
)

__all__ = [
    "AmlError",
    "AmlMessage",
    "parse_aml_https",
    "parse_aml_query_response",
    "parse_aml_sms",
    "verify_aml_https_hmac",
]
