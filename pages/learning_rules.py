"""Learning rules: backprop and its weight-transport-free alternatives, side by side."""
import numpy as np
import pandas as pd
import streamlit as st

import core
from ui import figures, live, resources, ticks, widgets
from ui.live_plot import live_plot

widgets.require_app_navigation()
demo = widgets.demo_mode()
widgets.steady_live_css()

st.title("Learning rules")
st.markdown("Every rule trains its own copy of the same student on the same teacher and inputs; "
            "only the matrix that carries the error back to the hidden layer differs. All rules "
            "advance in **one** vmapped compiled step.")
s = widgets.rules_ui(demo)
widgets.report_ignored_url_params()
slot = resources.rules_slot()
if resources.came_back(slot) and slot.run is not None:   # a reload, a reconnect
    st.session_state["rl_playing"] = False
    st.toast("Your comparison is back, paused where it was (Play goes on).", icon="↩️",
             duration="long")
try:
    cfg = widgets.rules_config(s)
except core.ConfigError as e:
    st.error(f"Invalid setting — {e} Change it in the sidebar.")
    st.session_state["rl_playing"] = False
    st.stop()

controls = widgets.run_controls_ui(prefix="rl")
status, changed = resources.configure_rules(slot, cfg, s.rules, reset=controls["reset"])
rebuilt = status == "restarted"
if rebuilt and changed:
    st.toast(f"Restarted: {', '.join(changed)} changed (a new teacher, shape or rule set).",
             icon="🔄")
run = slot.run
widgets.save_ui("rl", "rules", lambda n, t: resources.save_live(run, n, t, "rules"),
                lambda ids: f"Saved {len(ids)} runs, one per rule (tag 'rules').")
if controls["play"]:
    st.session_state["rl_playing"] = True
if controls["pause"] or rebuilt:
    st.session_state["rl_playing"] = bool(controls["play"]) and not controls["reset"]
if controls["step"]:
    with widgets.first_compile(run):
        run.advance(run.tick_steps(s.steps_per_tick, playing=False))
playing = st.session_state.get("rl_playing", False)
widgets.idle_note("rl")
ticks.mark_full_run(st.session_state, "rl")       # this run draws; the ticks train


POSTER_COLUMNS = ("rule", "final loss", "∠(Wᵀ,B) °", "∠(Δh, Δh_BP) °", "spike precision")


@st.fragment(run_every=ticks.TICK_S if playing else None)
def live_panels():
    if ticks.is_tick(st.session_state, "rl") and st.session_state.get("rl_playing", False):
        if widgets.idle_paused("rl"):
            st.rerun(scope="app")
        with widgets.first_compile(run):
            run.advance(run.tick_steps(s.steps_per_tick))
    r = run.rows()                   # one consistent state (a tick may still be appending)
    c = st.columns(3)
    c[0].metric("Step", r["step"])
    c[1].metric("Student-steps/s", f"{run.steps_per_s:.0f}",
                help=f"Training steps per second summed over the rules (all in one vmapped call), "
                     f"of wall-clock time over the last {run.meter.WINDOW:.0f} s of play, drawing "
                     f"included; training alone runs {run.meter.train_rate:.0f}. Steps per "
                     f"tick ({s.steps_per_tick}): {run.tick_steps(s.steps_per_tick)}.")
    c[2].metric("Rules", len(run.rules))
    steps = r["steps"]
    rev = f"run{run.epoch}"      # a restart resets the charts' view (ranges, zoom)
    # a deeper network: the hidden layer whose error (its feedback matrix, its update
    # angle) and incoming weights the angle and recovery charts follow
    names = run.hidden_names()
    j = widgets.layer_choice("Hidden layer", names, "rl_layer",
                             help="The angle and recovery charts follow this layer: the angle "
                                  "of the feedback matrix that carries its error, the angle of "
                                  "the error reaching it to backprop's, and the recovery of the "
                                  "weights into it. hidden 1 is nearest the inputs. The table "
                                  "lists every layer.")
    a, b = st.columns(2)
    with a:
        live_plot(figures.rules_figure(steps, r["loss"], run.rules, "Loss (mean of 10 steps)",
                                       "loss", log=True, smooth=10, silent=run.silent_loss(),
                                       silent_since=live.silent_since(run.changes)),
                  key="rl_loss", height=300, revision=rev)
        # each rule's last 25 steps; a diverged rule's (NaN) left out
        means = live.recent_loss(steps, r["loss"], run.changes)
        recent = None if means is None else {
            rule: m for rule, m in zip(run.rules, means) if np.isfinite(m)}
        silent = widgets.silent_student_text(run.cfg, run.silent_loss(), recent, tunable=False)
        if silent:
            st.caption(silent)
    with b:
        live_plot(figures.rules_figure(steps, r["alignment"][:, :, j], run.rules,
                                       f"∠(Wᵀ, B): the error to {names[j]}", "degrees"),
                  key="rl_align", height=300, revision=rev)
    a, b = st.columns(2)
    with a:
        # one hidden layer: its angle is the update angle; more: the layer named
        update, where = ((r["layer_angle"][:, :, j], f" at {names[j]}") if len(names) > 1
                         else (r["update_angle"], ""))
        live_plot(figures.rules_figure(steps, update, run.rules,
                                       f"Update ∠(Δh, Δh_BP) to bp{where}",
                                       "degrees", smooth=10), key="rl_update", height=300, revision=rev)
    with b:
        live_plot(figures.rules_figure(r["recovery_steps"], r["recovery"][:, :, j],
                                       run.rules,
                                       f"Weights to {names[j]}: rel. error", "rel. error"),
                  key="rl_recovery", height=300, revision=rev)
    table = pd.DataFrame(run.table())
    if demo:      # a laptop's width: the columns a visitor reads (the rest scrolled off)
        table = table[[c for c in table.columns
                       if c in POSTER_COLUMNS or c.startswith("∠(Wᵀ,B) hidden")]]
    st.dataframe(table, hide_index=True, width="stretch", placeholder="—",
                 column_config=widgets.rules_table_columns(table.columns, names))
    st.caption("Final loss: the mean of the last min(50, steps/10) steps, as every run's; "
               "∠(Wᵀ,B): the feedback matrix carrying the error to hidden 1"
               + (", or the layer named" if len(names) > 1 else "")
               + "; update angle: the mean of the last 50, every hidden layer together"
               + (" (∠(Δh, Δh_BP) °), or the layer named" if len(names) > 1 else "")
               + "; spikes: held-out input.")
    if "kp" in run.rules and (reach := widgets.kp_reach_text(run.cfg, run.exp.task.teacher)):
        st.caption(reach)


live_panels()
