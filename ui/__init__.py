"""Streamlit / Plotly glue between the pages and ``core``.

* :mod:`ui.widgets`   -- widget groups (``*_ui()``) returning small config objects.
* :mod:`ui.figures`   -- pure numpy -> ``go.Figure`` builders (no streamlit import).
* :mod:`ui.resources` -- every ``st.cache_*`` wrapper (bounded) and the calls into core.
"""
