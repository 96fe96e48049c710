"""Hostile configuration input: every mapping either validates or is refused
with a ConfigError naming a field -- never another exception."""
from __future__ import annotations

import dataclasses
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import core
from core.config import Config

FIELDS = [f.name for f in dataclasses.fields(Config)]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.one_of(scalars, st.lists(scalars, max_size=8))
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=10))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=6))
def test_from_dict_validates_or_names_the_field(d):
    try:
        cfg = core.from_dict(d)
    except core.ConfigError as e:
        assert e.field and str(e).startswith(e.field)
        known = e.field.split("[")[0]
        assert e.field in d or known in FIELDS or known == "config"
        return
    # a config that passed validation holds only finite, in-range numbers
    assert core.validate(cfg) == cfg
    for name in FIELDS:
        v = getattr(cfg, name)
        for x in (v if isinstance(v, tuple) else (v,)):
            if isinstance(x, float):
                assert math.isfinite(x)
