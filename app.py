"""Resonance Lab: entry point (`streamlit run app.py`).

Page config, navigation over pages/ and the sidebar chrome shared by every page.
"""
from pathlib import Path

import jax
import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import StopException

from core.runtime import (compute_summary, enable_compilation_cache, environment_problems,
                          use_all_cores)
from ui.ticks import GARBAGE
from ui.widgets import remember_page, sidebar_nav

use_all_cores()   # before JAX starts: one device per core (sweeps launched here inherit it)
enable_compilation_cache()

# a local image: a Material-icon favicon is fetched from fonts.gstatic.com, which an offline
# poster laptop cannot reach
st.set_page_config(page_title="Resonance Lab",
                   page_icon=str(Path(__file__).parent / "assets" / "favicon.png"), layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/neuron.py", title="Neuron", icon=":material/graphic_eq:", url_path="neuron"),
    # url paths equal the file stems: on a fresh server the very first request
    # may still be resolved against Streamlit's pages/ auto-discovery
    st.Page("pages/teacher_student.py", title="Teacher–Student", icon=":material/school:",
            url_path="teacher_student"),
    st.Page("pages/gradients.py", title="Gradients", icon=":material/functions:",
            url_path="gradients"),
    st.Page("pages/learning_rules.py", title="Learning rules", icon=":material/alt_route:",
            url_path="learning_rules"),
    st.Page("pages/runs.py", title="Runs & sweeps", icon=":material/table_chart:", url_path="runs"),
]
# the sidebar's links are the app's own: each carries its page's settings as the visitor
# left them (and poster mode), so a switch is one history entry and Back one press
page = st.navigation(PAGES, position="hidden")
sidebar_nav(PAGES)
st.sidebar.caption("Resonance Lab · resonate-and-fire networks trained with surrogate "
                   "gradients against a known teacher.")
st.sidebar.caption(f"Compute: {compute_summary()}")
# the server runs on with the default (compute_summary started the backend: pallas is judged)
for name, problem in environment_problems(backend=jax.default_backend()):
    st.sidebar.warning(f"`{name}` {problem} Until then the default is used.",
                       icon=":material/settings_alert:")
# the page's settings as its run leaves them, for the sidebar's links: after the page or its
# st.stop(), not after st.switch_page or a rerun (a RerunException: the URL may be the next
# page's already, and the next run records its own)
try:
    page.run()
except StopException:
    remember_page()
    raise
else:
    remember_page()
finally:
    GARBAGE.maybe_collect()   # a full collection a minute (postScriptGC is off: ui.ticks)
