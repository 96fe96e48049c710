"""Teacher--Student: train a student live and watch it converge to the teacher."""
from contextlib import nullcontext

import pandas as pd
import streamlit as st

import core
from ui import figures, live, resources, ticks, widgets
from ui.live_plot import live_plot

widgets.require_app_navigation()
demo = widgets.demo_mode()
widgets.steady_live_css()

st.title("Teacher–Student")
slot = resources.run_slot()
if resources.came_back(slot) and slot.run is not None:   # a reload, a reconnect
    st.session_state["ts_playing"] = False
    if resources.link_asks_otherwise(slot):
        # a new tab opened with another link: the link's settings apply (the menus showed
        # the old run's while the URL kept the link's, and a toast called them refused)
        slot.open_shown = None
        if st.query_params.get("run") != slot.opened:    # a later ?run=<that id> reopens it
            slot.opened = None
        st.toast("This link's settings apply: your earlier run in this browser goes on only "
                 "where they leave it (a new teacher or shape starts a new run).", icon="🔗")
    else:
        # the controls show the run's own settings: those of a run opened from the store
        # were in the old session only, and the new one's defaults restarted it
        slot.open_shown, _ = widgets.open_config(slot.run.cfg)
        st.toast("Your run is back, paused where it was (Play goes on).", icon="↩️",
                 duration="long")
opened = st.query_params.get("run")
if opened and slot.opened != opened:   # ?run=<id>: reopen a stored run (once: not on a reload)
    slot.opened = opened
    try:
        stored = resources.open_stored_run(opened)
        shown, differ = widgets.open_config(stored.cfg)
        slot.run = stored
        slot.open_shown = shown
        st.session_state["ts_playing"] = False
        st.toast(f"Opened run {opened[:8]} at step {slot.run.step}.", icon="📂")
        if differ:
            st.info(f"This run's {', '.join(differ)} {'is' if len(differ) == 1 else 'are'} not on "
                    "this page's menus; the run keeps its own values until you change a setting "
                    "(which then applies the page's).")
    except core.ConfigError as e:
        why = str(e).split(": ", 1)[-1] if e.field == "run" else str(e)
        st.error(f"Cannot open run {opened}: {why}")
s = widgets.teacher_student_ui(demo)
widgets.report_ignored_url_params()
slot.shown = widgets.ts_shown()     # what a reload of this page asks for (its URL)
try:
    cfg, invalid = widgets.to_config(s, demo), None
except core.ConfigError as e:
    invalid = e
    st.session_state["ts_playing"] = False
    if slot.run is None:      # nothing trained yet in this tab: nothing to keep
        st.error(f"Invalid setting — {e} Change the setting in the sidebar to start a run.")
        st.stop()
    st.error(f"Invalid setting — {e} The running student is kept (paused, shown below); change "
             "the setting in the sidebar.")
    cfg = slot.run.cfg

controls = widgets.run_controls_ui(disabled=invalid is not None)
if slot.open_shown is not None and (controls["reset"] or slot.open_shown != cfg):
    slot.open_shown = None   # a setting moved: the page's values apply
if invalid or slot.open_shown is not None:
    status, changed = "unchanged", []
else:
    status, changed = resources.configure_run(slot, cfg, reset=controls["reset"])
run = slot.run
cfg = run.cfg
if status == "restarted" and "run" in st.query_params:
    # the page no longer shows the stored run: a shared link would reopen it, not this one
    del st.query_params["run"]
    slot.opened = None
widgets.save_ui("ts", s.preset, lambda n, t: resources.save_live(run, n, t, s.preset),
                lambda rid: f"Saved as run {rid[:8]}; the Runs & sweeps page reopens it here.")
if status == "restarted" and changed:
    st.toast(f"Restarted: {', '.join(changed)} changed (a new teacher, shape or rule).", icon="🔄")
if controls["play"]:
    st.session_state["ts_playing"] = True
if controls["pause"] or controls["reset"] or (status == "restarted" and changed):
    st.session_state["ts_playing"] = False
if controls["step"]:
    with widgets.first_compile(run):
        run.advance(run.tick_steps(s.steps_per_tick, playing=False))
playing = st.session_state.get("ts_playing", False) and not run.stopped
widgets.idle_note("ts")

v, g, peak, area = resources.surrogate_info(cfg.surrogate, cfg.scale, cfg.surrogate_norm)
# the sidebar's chart keeps its size in poster mode (its title did not fit the sidebar)
widgets.plotly_chart(st.sidebar, figures.surrogate_figure(v, g, cfg.surrogate, peak, area),
                     key="ts_sg", poster=False)


ticks.mark_full_run(st.session_state, "ts")       # this run draws; the ticks train


@st.fragment(run_every=ticks.TICK_S if playing else None)
def live_panels():
    if ticks.is_tick(st.session_state, "ts") and st.session_state.get("ts_playing", False) \
            and not run.stopped:
        if widgets.idle_paused("ts"):
            st.rerun(scope="app")
        with widgets.first_compile(run):
            run.advance(run.tick_steps(s.steps_per_tick))
        if run.stopped:
            st.session_state["ts_playing"] = False
            st.rerun(scope="app")
    snap = run.snapshot()
    hist = run.history
    c = st.columns(5)
    c[0].metric("Step", run.step)
    c[1].metric("Steps/s", f"{run.steps_per_s:.0f}",
                help=f"Training steps per second of wall-clock time over the last "
                     f"{run.meter.WINDOW:.0f} s of play, drawing the panels included; training "
                     f"alone runs {run.meter.train_rate:.0f} steps/s. Steps per tick "
                     f"(sidebar, {s.steps_per_tick}): {run.tick_steps(s.steps_per_tick)}; more "
                     f"train faster between redraws.")
    c[2].metric("Loss", f"{hist.loss[-1]:.3g}" if hist.loss else "–")
    c[3].metric("Spike precision", f"{snap['precision']:.3f}",
                help="Share of student output spikes within ±1 bin of a teacher spike (held-out).")
    corr = snap["recovery"][0]["corr"]
    c[4].metric("Input weights corr", "—" if corr is None else f"{corr:.3f}",
                help=f"Correlation of the matched student weights into {run.layer_names()[0]} "
                     "(from the inputs) with the teacher's.")
    if run.stopped:
        st.error(run.message)
    silent = widgets.silent_teacher_text(cfg, snap["teacher_out"])
    if silent:
        st.warning(silent, icon=":material/volume_off:")
    names = run.layer_names()
    n_layers = len(names)
    top = ("ts_loss", "ts_fb", "ts_membrane") if run.has_feedback else ("ts_loss", "ts_membrane")
    slots = dict(zip(top, st.columns(len(top))))
    for group, shown in (("ts_w", True), ("ts_n", run.shows_neuron_panels())):
        if shown:                         # a row of weight panels, then of f/b panels
            cols = st.columns(min(n_layers, 3))
            slots.update((f"{group}{i}", cols[i % len(cols)]) for i in range(n_layers))
    st.caption("Weights, f and b: solid lines are the student's (its hidden units matched to "
               "the teacher's), dashed lines the teacher's values. The charts keep their "
               "matching until another is better by more than "
               f"{live.SHOWN_KEEP:g} correlation a unit (lines would otherwise trade units while "
               "near-equal matchings alternate); the table uses the best one.")
    for key, fig, height in run.panels(snap):   # each figure is built as it is drawn
        with slots.get(key, nullcontext()):       # the raster: below the rows
            live_plot(fig, key=key, height=height, revision=f"run{run.epoch}")
    recent = live.recent_loss(hist.loss_steps, hist.loss, run.changes)
    silent = widgets.silent_student_text(cfg, run.silent_loss(), recent)
    if silent:
        with slots["ts_loss"]:                    # below the loss chart
            st.caption(silent)
    if cfg.feedback == "kp" and (reach := widgets.kp_reach_text(cfg, run.exp.task.teacher)):
        with slots["ts_fb"]:                      # below the feedback angles
            st.caption(reach)
    rows = [{"layer": names[i], "group": grp, "rel. error": v["rel_error"],
             "corr": v["corr"],           # None where undefined (core.metrics.corr_defined)
             "signed ε": v["signed"]}
            for i, layer in enumerate(snap["recovery"])
            for grp, v in layer.items() if isinstance(v, dict)]
    # an undefined corr as a dash (Streamlit writes "None" in the cell by default)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", placeholder="—")
    st.caption("corr: Pearson's over the layer's values (weights: their cosine when fewer than "
               "three); a dash where there are fewer than three values, or the teacher's or the "
               "student's are all equal (a fixed f or b, the teachers' zero resets): it is then "
               "±1 or undefined whatever they are. signed ε: Σ(θ − θ*) / max(‖θ*‖, 0.075), "
               "the student's values less the teacher's, summed (Braun & Vogels 2021): its sign "
               "says whether they lie above or below the teacher's on the whole.")
    n_res, n_units = run.teacher_resonance()
    st.caption(f"Held-out: spike precision {snap['precision']:.3f}, recall {snap['recall']:.3f}, "
               f"output-rate error {snap['rate_error']:+.2f}. Hidden units matched to the teacher's "
               "(Hungarian assignment on incoming weights)."
               + (f" Teacher: {n_res} of {n_units} RF units resonate (ω > |b|: a peak at "
                  "√(ω² − b²))" + ("." if n_res == n_units else
                                   "; the others, strongly damped, have no peak: they still "
                                   "ring at f, but answer slower inputs more.")
                  if n_units else ""))


live_panels()
