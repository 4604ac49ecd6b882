"""The one exception type a user can cause.

Everything a user can get wrong (a bad genotype, an unknown model, a corrupt file, missing data, an
unreachable Hub, a blown latency budget) raises :class:`MenasError` with a message that says what to do.
The CLI turns it into one line on stderr and a non-zero exit; library callers catch it like any error.
"""

from __future__ import annotations


class MenasError(Exception):
    """An error caused by input, environment or budget, with a message meant for the user."""


class GenotypeError(MenasError, ValueError):
    """A genotype (block string, JSON document or file) that does not parse or validate."""
