"""Home: what the lab is, its presets, and one small live teacher--student run."""
import numpy as np
import streamlit as st

import core
from ui import figures, resources, widgets

widgets.require_app_navigation()
widgets.demo_mode()

PRESET, RUN_STEPS = "single-neuron", 200

st.title("Resonance Lab")
st.markdown(
    "A lab for one question: **how well do surrogate gradients recover the parameters of a "
    "network of resonate-and-fire (RF) spiking neurons?** An RF neuron is a damped oscillator "
    "(z = x + iy, dz/dt = (b + iω)z + I) that spikes when its voltage y crosses a threshold, so "
    "it prefers inputs arriving at its own rhythm. Spikes are not differentiable; *surrogate "
    "gradients* replace the step's derivative with a smooth bump during training.\n\n"
    "Training is **teacher–student**: a teacher network with known random parameters produces "
    "target spike trains, and a student learns to reproduce them. Because the exact answer is "
    "known, every weight, frequency and damping can be watched converging to the teacher — or not.")

st.subheader("Start here")
g1, g2, g3 = st.columns(3)
with g1.container(border=True):
    st.markdown("**Figure 1 of the seed report**  \n20 inputs → 2 hidden → 1 output RF. Press "
                "Play and watch the weights miss the teacher's dashed lines.")
    st.page_link(label="Open Figure 1", icon=":material/school:",
                 **widgets.gallery_link("figure1"))
with g2.container(border=True):
    st.markdown("**Single neuron**  \n20 Poisson inputs → 1 RF neuron: here surrogate "
                "gradients do recover every weight.")
    st.page_link(label="Open single neuron", icon=":material/school:",
                 **widgets.gallery_link("single-neuron"))
with g3.container(border=True):
    st.markdown("**Resonance**  \nTwo kicks, each below threshold: one period apart they add up "
                "to a spike; half a period apart they cancel. Move the ISI and the frequency.")
    st.page_link(label="Open the resonance demo", icon=":material/graphic_eq:",
                 **widgets.gallery_link("resonance"))

# as the sidebar's links: the page's settings as left, and poster mode (ui.widgets.page_params)
st.page_link("pages/gradients.py", label="How faithful is each surrogate gradient? → Gradients",
             icon=":material/functions:", query_params=widgets.page_params("pages/gradients.py"))
st.page_link("pages/learning_rules.py", label="Learning without weight transport → Learning rules",
             icon=":material/alt_route:",
             query_params=widgets.page_params("pages/learning_rules.py"))

st.subheader("Presets")
st.markdown("\n".join(f"- **{r['name']}** ({r['layers']} {r['model'].upper()}, learns "
                      f"{r['learn']}): {r['description']}" for r in resources.preset_rows()))

st.subheader(f"Try it: train the `{PRESET}` student")
st.caption("20 Poisson inputs drive one RF neuron; the student starts from its own random "
           "weights and is trained with the SuperSpike surrogate on the van Rossum distance.")
run, reset = widgets.train_buttons_ui()
# the visitor's own run once they train (a reload comes back to it); until then, or after
# Reset, the untrained example every visitor shares
slot = resources.home_slot(create=run)
try:
    if reset and slot is not None:
        slot.run = None
    if run:
        if slot.run is None:
            slot.run = resources.new_live_run(PRESET)
        with st.spinner(f"Training {RUN_STEPS} steps…"):
            slot.run.advance(RUN_STEPS)
    live = slot.run if slot is not None and slot.run is not None else resources.home_start(PRESET)
except core.ConfigError as e:
    st.error(f"Could not train: {e}")
    st.stop()

m = resources.home_view(live)
cols = st.columns(5)
cols[0].metric("Step", live.step)
cols[1].metric("Loss", f"{float(np.mean(m['loss'][-25:])):.3g}" if m["loss"].size else "–",
               help="Mean over the last 25 steps (one step's loss is one random batch: noisy).")
cols[2].metric("Weight corr", "—" if m["corr"] is None else f"{m['corr']:.3f}")
cols[3].metric("Weight rel. error", f"{m['rel_error']:.3f}")
cols[4].metric("Spike precision", f"{m['precision']:.3f}",
               help="Share of student spikes within ±1 ms of a teacher spike (held-out input).")
if live.diverged:
    st.warning("Training diverged: the last finite parameters are kept. Press Reset.")
left, right = st.columns(2)
widgets.plotly_chart(left, figures.loss_figure(m["loss"]), key="home_loss")
widgets.plotly_chart(right, figures.weights_figure(m["weights"], m["teacher_w"]), key="home_weights")
if not m["loss"].size:
    st.info(f"Press **Run {RUN_STEPS} steps** to train; press it again to continue.")
