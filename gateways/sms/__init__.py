"""SMS to 112 from the SMS aggregator (``POST /v1/gateways/sms``).

An AML SMS (``gateways.aml``), which a phone sends by itself with its position, is
recognised from the text; any other SMS is a plain text report without a location.
"""
