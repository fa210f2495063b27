"""US state and territory names: LionDesk addresses want them spelled out, LionDesk leads abbreviated."""

from __future__ import annotations

from bridge.translate.text import folded_words

STATE_NAMES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa",
    "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
    "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri",
    "MT": "Montana", "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey",
    "NM": "New Mexico", "NY": "New York", "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio",
    "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina",
    "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont",
    "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "DC": "District of Columbia",
    "AS": "American Samoa", "GU": "Guam", "MP": "Northern Mariana Islands", "PR": "Puerto Rico",
    "VI": "U.S. Virgin Islands", "UM": "U.S. Minor Outlying Islands",
}
"""USPS code → the name LionDesk's address `state` expects (docs/vendors/liondesk-api.md §4.2: "Kansas")."""

# Spellings people actually type for the same places; the key is compared folded (see _fold).
_ALIASES = {
    "hawai'i": "HI", "hawaiʻi": "HI", "washington dc": "DC", "washington d.c.": "DC", "d.c.": "DC",
    "virgin islands": "VI", "us virgin islands": "VI", "united states virgin islands": "VI",
    "commonwealth of puerto rico": "PR",
}


def _fold(text: str) -> str:
    """Fold a state as typed for lookup: case, surrounding and repeated spaces do not matter."""
    return folded_words(text.replace(",", " "))


_CODES = {_fold(name): code for code, name in STATE_NAMES.items()}
_CODES.update({_fold(code): code for code in STATE_NAMES})
_CODES.update({_fold(alias): code for alias, code in _ALIASES.items()})


def state_code(text: str) -> str:
    """Return the USPS code of a US state or territory given by code or name, else the text stripped."""
    return _CODES.get(_fold(text), text.strip())


def state_name(text: str) -> str:
    """Return the spelled-out name of a US state or territory given by code or name, else the text stripped."""
    code = _CODES.get(_fold(text))
    return STATE_NAMES[code] if code else text.strip()
