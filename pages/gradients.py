"""Gradients: the surrogate shapes, and how faithful each surrogate gradient is."""
import pandas as pd
import streamlit as st

import core
from ui import figures, resources, widgets

FIDELITY_COLUMNS = {   # the table's columns, in order, with their help
    "shape": None, "scale": None,
    "cos_smoothed": "(a), corrected for the sampling noise of the smoothed-loss estimate; "
                    "— where N samples do not resolve it",
    "cos_smoothed_se": "Jackknife standard error of cos_smoothed.",
    "cos_smoothed_raw": "(a) uncorrected: the plain cosine with the noisy estimate, pulled "
                        "toward 0 the more, the fewer the samples.",
    "resolved": "Share of the estimate's squared norm that is signal rather than sampling noise "
                "(the same for every row).",
    "cos_teacher": "(b) descent direction vs the direction to the matched teacher θ* − θ.",
    "smoothed_teacher": "(c) the smoothed loss's own descent direction −∇L_σ vs θ* − θ: how much "
                        "the true loss pulls toward the teacher here (the same for every row; "
                        "corrected for sampling noise as (a)).",
    "smoothed_teacher_se": "Jackknife standard error of smoothed_teacher.",
}

widgets.require_app_navigation()
demo = widgets.demo_mode()

st.title("Gradients")
st.markdown("The forward pass always spikes with a Heaviside step; only the backward shape "
            "changes. Library defaults for the same name differ by up to 50× in area, so every "
            "shape is shown with its peak and area.")

shapes, scale, norm = widgets.surrogate_view_ui()
if not shapes:
    st.info("Choose at least one shape.")
else:
    v, curves, rows = resources.surrogate_table(shapes, scale, norm)
    # poster mode stacks them: side by side on a laptop the table lost its area columns
    # and on a laptop (1280 px) the last column was cut off: narrow number columns
    left, right = widgets.side_by_side(demo, [1, 1])
    widgets.plotly_chart(left, figures.surrogate_shapes_figure(v, curves, norm), key="gs_curves")
    right.dataframe(pd.DataFrame(rows)[["name", "raw_peak", "raw_area", "peak", "area"]],
                    hide_index=True, width="stretch",
                    column_config={"name": st.column_config.TextColumn(width=118),
                                   **{c: st.column_config.NumberColumn(width=66, format="%.4g")
                                      for c in ("raw_peak", "raw_area", "peak", "area")}})

st.subheader("Gradient fidelity")
st.markdown("Cosine between each surrogate gradient and **(a)** the gradient of the "
            "Gaussian-smoothed loss (N antithetic perturbations of the true, spiking forward "
            "pass; corrected for the estimate's sampling noise, which pulls a plain cosine "
            "toward 0; error bars: jackknife standard error) and **(b)** the direction to the "
            "matched teacher, θ* − θ. **(c)**, the dashed line on (b): the smoothed loss's own "
            "descent direction against θ* − θ, how much the true loss pulls toward the teacher "
            "at all — where (c) is near 0 no surrogate can do better by following the loss. "
            "The whole table is one compiled computation, run in batches that fit in memory.")
fs = widgets.fidelity_ui()
widgets.report_ignored_url_params()
fcfg = core.get_preset(fs.preset)
d = widgets.learnable_count(fcfg)
if fs.n_samples < d:
    st.caption(f"⚠️ {fs.n_samples} perturbation pairs for d = {d:,} learnable parameters: the "
               "smoothed-loss estimate (a) may be mostly noise here (each pair adds noise in all "
               "d directions), and its cosine is left blank where the noise does not leave the "
               "gradient resolved; (b) is exact.")
if st.button("Compute fidelity", key="gf_run", type="primary"):
    if not fs.shapes or not fs.scales:
        st.error("Fidelity: choose at least one shape and one scale.")
    else:
        bar = st.progress(0.1, text="Sampling the teacher and the student…")
        try:
            widgets.check_fidelity_cost(fcfg, fs.preset, fs.n_samples,
                                        len(fs.shapes) * len(fs.scales), fs.train_steps,
                                        demo)
            bar.progress(0.4, text=f"{len(fs.shapes) * len(fs.scales)} surrogate gradients and "
                                   f"{fs.n_samples} perturbation pairs…")
            st.session_state["gf_rows"] = resources.fidelity_rows(*fs.__dict__.values())
            st.session_state["gf_for"] = fs          # what they were computed for
            refused = widgets.line_refusal(fcfg, fs.preset, fs.train_steps, demo)
            if refused is None:
                bar.progress(0.8, text="The loss along the line to the teacher…")
            st.session_state["_gf_line"] = refused or resources.fidelity_line(
                fs.preset, fs.sigma, fs.seed, fs.train_steps, fs.norm, fs.start, fs.start_noise)
            bar.progress(1.0, text="Done.")
        except core.ConfigError as e:     # over budget: nothing is invalid, it is too big
            st.error(f"Too big for this page — {str(e).split(': ', 1)[-1]}"
                     if e.field in widgets.FIDELITY_FIX else f"Invalid setting — {e}")
rows = st.session_state.get("gf_rows")
if rows:
    made = st.session_state.get("gf_for")
    if made is not None:
        st.caption(widgets.fidelity_label(made))
        changed = widgets.fidelity_changed(made, fs)
        if changed:
            st.warning(f"These results are for the settings above, not the current ones "
                       f"({', '.join(changed)} changed): press **Compute fidelity** to update.",
                       icon=":material/history:")
    a, b = st.columns(2)
    smoothed = figures.fidelity_figure(rows, "cos_smoothed", "(a) vs smoothed-loss gradient",
                                       "cos_smoothed_se")
    pull = rows[0].get("smoothed_teacher", float("nan"))     # (c): one value per table
    pull_se = rows[0].get("smoothed_teacher_se", float("nan"))
    teacher = figures.fidelity_figure(
        rows, "cos_teacher", "(b) descent vs direction to teacher",
        reference=(pull, pull_se, f"(c) smoothed loss: {pull:.2f} ± {pull_se:.2f}"))
    widgets.plotly_chart(a, smoothed, key="gf_smoothed")
    widgets.plotly_chart(b, teacher, key="gf_teacher")
    widgets.fidelity_resolution_note(rows, made.n_samples if made else fs.n_samples)
    st.dataframe(pd.DataFrame(rows).reindex(columns=list(FIDELITY_COLUMNS)), hide_index=True,
                 width="stretch",
                 placeholder="—", column_config={k: st.column_config.NumberColumn(help=v)
                                                 for k, v in FIDELITY_COLUMNS.items() if v})
    line = st.session_state.get("_gf_line")
    if isinstance(line, dict):
        widgets.plotly_chart(st, figures.line_profile_figure(line), key="gf_line_chart")
        st.caption("The loss on the same held-out batch along θ + t(θ* − θ), only the learnable "
                   "parameters moving: the spiking loss (a staircase: spikes move by whole "
                   f"steps) and its mean over {line['n_samples']} perturbations of σ = "
                   f"{line['sigma']:g}, the same at every t. Where the smoothed curve falls "
                   "toward t = 1 the teacher is downhill from the student; where it rises, or "
                   "the silent student's level lies below the student's loss, local descent "
                   "leads elsewhere.")
    elif line:
        st.caption(line)
else:
    st.caption("Press **Compute fidelity** (about 5 s for 10 shapes × 6 scales × 256 samples).")
