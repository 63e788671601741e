"""Advanced Mobile Location (ETSI TS 103 625): SMS v1, SMS v2 and HTTPS. Pure: no I/O.

Where each form is read: `gateways.aml.sms` (the SMS text), `gateways.aml.https` (the
HTTPS form and its HMAC), `gateways.aml.query` (a query's JSON answer),
`gateways.aml.fields` (patterns, units, the field reader) and `gateways.aml.message`
(`AmlMessage`, `AmlError`). This module names them all in one place.

The contract every function here keeps, because a message to 112 is never thrown away
for its content:

- Anything recognisably AML becomes an `AmlMessage`, however broken its values. A value
  that fails validation is left out (``None``) with a warning that starts with the
  field's key and says why; the raw text of every field stays in `AmlMessage.fields`.
- Location is all or nothing. When the location fields (v1 ``lt``/``lg``, v2 ``lo``,
  HTTPS ``location_latitude``/``location_longitude``) are missing, malformed, out of
  range or the 0,0 placeholder, or the handset says it had no fix (``pm=N``),
  `AmlMessage.location` is ``None`` and `AmlMessage.location_error` names the field.
  Nothing is guessed. A bad radius, time or method only loses that value.
- A length field (``ml``) that disagrees with the text is a warning, not an error:
  published examples are off by one or two (``../shared/data/aml/README.md``).
- `AmlError` is raised only for input that is not AML at all; the SMS gateway then
  treats the text as an ordinary SMS.
"""

from gateways.aml.https import parse_aml_https, verify_aml_https_hmac
from gateways.aml.message import AmlError, AmlMessage
from gateways.aml.query import parse_aml_query_response
from gateways.aml.sms import parse_aml_sms

__all__ = [
    "AmlError",
    "AmlMessage",
    "parse_aml_https",
    "parse_aml_query_response",
    "parse_aml_sms",
    "verify_aml_https_hmac",
]
