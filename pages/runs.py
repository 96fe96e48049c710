"""Runs & sweeps: saved runs, overlays, sweeps with progress, heatmaps, export."""
import json

import streamlit as st

import core
from core.store import STATUSES, RunStore, StoreError, default_path
from core.sweep import distinct, make_spec, parse_grid
from ui import resources
from ui import runs as R
from ui import widgets

widgets.require_app_navigation()
demo = widgets.demo_mode()
widgets.steady_live_css()


def sweep_slot() -> R.SweepSlot:
    """This visitor's background sweep: a reload comes back to it; stopped
    :data:`ui.tabs.PARK_S` after the tab closed."""
    return resources.tab().slot("sweep", R.SweepSlot)


def damaged_store_ui(path, error: StoreError) -> None:
    """The store's error and the one recovery path (renames, never deletes)."""
    st.error(f"The run store cannot be opened — {error}")
    has_index = (path / "index.sqlite").exists()
    label = ("Move the damaged index (and its arrays) aside and start a new store" if has_index
             else "Move the orphaned arrays aside and start a new store")
    st.caption("Nothing is deleted: the file is renamed with a UTC timestamp, so it can still be "
               "restored or inspected.")
    if st.button(label, key="rs_recover", type="primary"):
        try:
            moved = R.move_index_aside(path)
        except (OSError, StoreError) as e:
            st.error(f"Could not move it aside — {e}")
            return
        st.session_state["rs_flash"] = ("Moved aside: " + ", ".join(p.name for p in moved)
                                        + ". A new, empty store starts here.")
        st.rerun()


LAUNCH_KEYS = ("sw_p", "sw_shapes", "sw_scales", "sw_lrs", "sw_opt", "sw_rules", "sw_start",
               "sw_sno", "sw_seeds", "sw_steps", "sw_name")


def launcher_ui() -> tuple:
    """Sweep settings -> (validated SweepSpec or None, launch pressed)."""
    names = list(core.presets())
    c = st.columns([2, 3, 2, 2])
    preset = c[0].selectbox("Preset", names, index=names.index("figure1"), key="sw_p",
                            bind="query-params")
    base = core.get_preset(preset)
    shapes = c[1].multiselect("Surrogate shapes", list(core.SURROGATES), ["superspike", "sigmoid"],
                              key="sw_shapes", bind="query-params")
    scales = c[2].text_input("Scales β", "1,5,25", key="sw_scales", bind="query-params",
                             help="Comma-separated; blank keeps the preset's.")
    lrs = c[3].text_input("Learning rates", "", key="sw_lrs", bind="query-params",
                          help="Comma-separated, e.g. 0.003,0.01; blank keeps the preset's.")
    c = st.columns([3, 3, 3, 2])
    opts = c[0].multiselect("Optimizers", list(core.OPTIMIZERS), [], key="sw_opt",
                            bind="query-params", placeholder=f"{base.optimizer} (the preset's)",
                            help="Adam's step is about the learning rate whatever the gradient's "
                                 "size, SGD's is the gradient times it: the same rate is a much "
                                 "larger step for Adam near a minimum.")
    rules = c[1].multiselect("Credit assignment", list(core.FEEDBACKS), [], key="sw_rules",
                             bind="query-params", placeholder="bp (the preset's)",
                             help="Rules to sweep: bp (backprop), fa, sign, kp, wm, dfa. Each "
                                  "rule's runs store their angles to backprop (∠(Wᵀ,B) per "
                                  "hidden layer, the update angle), which the heatmap can show.")
    neurons = c[2].multiselect("Student start", list(core.STUDENT_STARTS), [], key="sw_start",
                               bind="query-params", placeholder="own",
                               help="own: drawn from the student seed; teacher-neurons: the "
                                    "teacher's f, b and reset, weights drawn (only the weights "
                                    "to recover); near-teacher: the teacher's network, each "
                                    "weight times 1 + σ·N(0, 1) (σ: Start noise σ).")
    noise = c[3].text_input("Start noise σ", "", key="sw_sno", bind="query-params",
                            placeholder=f"{base.start_noise:g} (the preset's)",
                            help="Comma-separated σ of a near-teacher start, 0 to 10, e.g. "
                                 "0.01,0.2; blank keeps the preset's. It acts on near-teacher "
                                 "starts only.")
    c = st.columns([3, 2, 4])
    seeds = c[0].slider("Student seeds", 1, 8, 2, key="sw_seeds", bind="query-params")
    max_steps = R.DEMO_MAX_STEPS if demo else R.MAX_STEPS
    steps = c[1].number_input("Steps", 10, max_steps, 300, 10, key="sw_steps", bind="query-params")
    name = c[2].text_input("Name", "", key="sw_name", bind="query-params",
                           placeholder=f"{preset} sweep")
    spec = None
    try:
        grid = parse_grid(R.launch_grid(shapes, scales, lrs, rules, neurons, opts, noise))
        spec = make_spec(base, grid, int(seeds), int(steps),
                         name.strip() or f"{preset} sweep", preset)
        R.check_launch(spec, demo)
    except core.ConfigError as e:
        st.error(f"Invalid setting — {R.launch_error_text(e)}")
        spec = None
    job = slot.job
    busy = job is not None and job.running
    with st.container(horizontal=True, vertical_alignment="center"):
        launch = st.button("Launch sweep", key="sw_launch", type="primary",
                           disabled=spec is None or busy, icon=":material/rocket_launch:")
        if spec is not None:
            points = R.expand(spec)
            n, trained = len(points), len(distinct(points)[0])
            same = (f"; {n - trained} of them equal to another (they differ only in a setting "
                    "they leave idle, e.g. σ of an own start): trained once, stored as their "
                    "own runs" if trained < n else "")
            st.caption(f"{R.count(n, 'point')} × {spec.steps} steps, trained in groups, one compiled "
                       f"call each ({trained * spec.steps} student-steps{same}).")
    return spec, launch and not busy


def progress_text(job: R.SweepJob) -> str:
    p = job.progress
    if p is None:
        return "Compiling and sampling teachers…"
    rate = job.rate()
    return (f"group {p.group + 1}/{p.groups} · points {p.points_done}/{p.points_total} · "
            f"{p.student_steps}/{p.student_steps_total} student-steps · "
            + (f"{rate:.0f}/s · " if rate is not None else "")
            + f"diverged {p.diverged}" + (" · stopping…" if job.stopping else ""))


def job_summary(job: R.SweepJob) -> None:
    if job.error:
        st.error(f"Sweep failed — {job.error}")
    elif job.result is not None:
        r = job.result
        msg = (f"Sweep `{r.sweep_id}`: {R.points_summary(r.rows)} in {r.seconds:.1f} s; "
               f"{r.student_steps:,} student-steps in {r.train_seconds:.1f} s of training "
               f"calls, their compiling included ({r.student_steps_per_s:.0f}/s); the rest "
               "sampled teachers, evaluated and stored.")
        (st.warning if r.stopped else st.success)(
            ("Stopped. Finished groups are stored; the group in training is stored as "
             "`stopped` (left out of the heatmap unless included). " if r.stopped else "")
            + msg)


def sweeps_ui(store, sweeps) -> None:
    # labels never change (the URL holds the label of a bound choice)
    labels = {s["id"]: f"{s['name'] or 'sweep'} · {s['id']}" for s in sweeps}
    sid = st.selectbox("Sweep", list(labels), format_func=labels.get, key="sw_sel",
                       bind="query-params")
    info = next(s for s in sweeps if s["id"] == sid)
    runs = store.sweep_runs(sid)
    status, stored = info["status"], f"{len(runs)} of {R.count(info['n_points'], 'point')} stored"
    if info.get("ended"):      # recorded running, its process gone
        status = f"stopped: {info['ended']} ({stored})"
    elif status == "running" and info.get("process") == "alive":
        status = f"running ({stored} so far)"
    elif status == "running":  # its process is on another host, or unrecorded
        status = f"running or interrupted ({stored}; an interrupted sweep keeps what it stored)"
    st.caption(f"{R.count(info['n_points'], 'point')} · {status} · created "
               f"{info['created'][:19].replace('T', ' ')} UTC")
    try:
        spec, table = R.sweep_table(info["spec"], runs)
    except core.ConfigError as e:
        st.error(f"This sweep cannot be shown — {e}")
        return
    if table.empty:
        st.info("No point of this sweep is stored yet.")
        return
    axes, metrics, order = spec.axes, R.metric_columns(table), R.axis_values(spec)
    figs = {}
    if axes:
        c = st.columns(3)
        metric = c[0].selectbox("Metric", metrics, key="sw_metric", bind="query-params",
                                help="weight_error_*: relative error of the weights after "
                                     "matching student units to the teacher's. A feedback "
                                     "rule's: alignment_deg_h*, ∠(Wᵀ,B) of the matrix carrying "
                                     "hidden layer *'s error; update_angle_deg, ∠(Δh, Δh_BP) "
                                     "of every hidden layer together, and with more than one "
                                     "update_angle_deg_h*, hidden layer *'s alone (backprop's "
                                     "points have none).")
        x0, y0 = R.default_axes(axes, order)
        x = c[1].selectbox("x axis", axes, index=axes.index(x0), key="sw_x", bind="query-params")
        y = c[2].selectbox("y axis", axes, index=axes.index(y0), key="sw_y", bind="query-params")
        others = [a for a in axes if a not in (x, y)]
        include = False
        partial = int((~R.finished_mask(table)).sum())
        if partial:       # a stopped sweep: its group in training did not finish its steps
            rows = [{"status": s, "metrics": {"steps": n}}
                    for s, n in zip(table["status"], table["steps"])]
            st.caption(f"Stored: {R.points_summary(rows)}. Unless stopped points are "
                       "included, the heatmap and parallel coordinates show only the points "
                       "that ran to their end (finished or diverged); a cell without one is "
                       "blank.")
            include = st.checkbox("Include stopped points (partly trained; cells holding one "
                                  "are marked *)", key="sw_stopped", bind="query-params")
        figs["heatmap"] = R.heatmap_figure(table, x, y, metric, order, others, include)
        figs["parcoords"] = R.parcoords_figure(table, axes, metric, order, include)
        a, b = widgets.side_by_side(demo)
        widgets.plotly_chart(a, figs["heatmap"], key="sw_heatmap")
        widgets.plotly_chart(b, figs["parcoords"], key="sw_parcoords")
    st.dataframe(table, hide_index=True, width="stretch", placeholder="—")
    doc = {"sweep": {k: info[k] for k in ("id", "name", "created", "status", "n_points")},
           "spec": spec.to_dict(),
           "points": json.loads(table.to_json(orient="records", double_precision=15))}
    with st.container(horizontal=True):
        st.download_button("Metrics CSV", table.to_csv(index=False), f"sweep-{sid}.csv",
                           "text/csv", key="sw_csv", on_click="ignore",
                           icon=":material/download:")
        st.download_button("Metrics JSON", json.dumps(doc, indent=1), f"sweep-{sid}.json",
                           "application/json", key="sw_json", on_click="ignore",
                           icon=":material/download:")
        for name, fig in figs.items():
            st.download_button(f"{name.capitalize()} HTML", lambda fig=fig: R.figure_html(fig),
                               f"sweep-{sid}-{name}.html", "text/html", key=f"sw_html_{name}",
                               on_click="ignore", icon=":material/download:")


def _delete(ids: list) -> None:
    """Confirmed delete (a callback: runs before the next script run)."""
    st.session_state["rs_confirm"] = None
    gone = []          # deleted meanwhile by another visitor or the command line
    try:
        with RunStore(default_path(), create=False) as s:
            for run_id in ids:
                try:
                    s.delete(run_id)
                except StoreError as e:
                    if e.field != "run_id":
                        raise
                    gone.append(run_id)
    except StoreError as e:
        st.session_state["rs_flash_error"] = f"Delete failed — {e}"
        return
    st.session_state["rs_sel"] = [i for i in st.session_state.get("rs_sel", []) if i not in ids]
    st.session_state["rs_flash"] = f"Deleted {len(ids) - len(gone)} run(s)." + (
        f" {len(gone)} had already been deleted (by another visitor or the command line)."
        if gone else "")


def actions_ui(store, selected: list) -> None:
    """Open / delete / export the selected runs."""
    one = len(selected) == 1
    with st.container(horizontal=True):
        if st.button("Open in Teacher–Student", key="rs_open", icon=":material/school:",
                     disabled=not one, help="Reopen the selected run (select exactly one)."):
            st.switch_page("pages/teacher_student.py",       # poster mode kept in the link
                           query_params={"run": selected[0], **({"demo": "1"} if demo else {})})
        # poster mode: any visitor's phone could delete the presenter's runs
        if not demo and st.button(f"Delete {len(selected)} run(s)", key="rs_delete",
                                  icon=":material/delete:"):
            st.session_state["rs_confirm"] = list(selected)
        if one:
            try:
                bundle = R.export_bundle(store, selected[0])
            except StoreError as e:
                st.error(f"Export failed — {e}")
            else:
                st.download_button("Export bundle (.zip)", bundle, f"run-{selected[0]}.zip",
                                   "application/zip", key="rs_export", on_click="ignore",
                                   icon=":material/archive:")
    if demo:
        st.caption("Deleting and importing runs are off in poster mode (`?demo=0` turns them on).")
    elif st.session_state.get("rs_confirm") == list(selected):   # asked for these very runs
        st.warning(f"Delete {len(selected)} run(s) and their arrays? This cannot be undone.")
        with st.container(horizontal=True):
            st.button("Yes, delete", key="rs_delete_yes", type="primary", on_click=_delete,
                      args=(list(selected),))
            st.button("Cancel", key="rs_delete_no",
                      on_click=lambda: st.session_state.update(rs_confirm=None))


def import_ui() -> None:
    up = st.file_uploader("Import a run bundle (.zip from *Export bundle* or "
                          "`python -m core runs export`)", type=["zip"], key="rs_import",
                          max_upload_size=5)
    if up is None or st.session_state.get("rs_imported") == up.file_id:
        return
    st.session_state["rs_imported"] = up.file_id
    try:
        with RunStore(default_path()) as target:
            run_id = R.import_bundle(target, up.getvalue(), up.name)
    except StoreError as e:
        st.error(f"Import failed — {e}")
        return
    st.session_state["rs_flash"] = f"Imported run `{run_id}`."
    st.rerun()


# ---- the page ----------------------------------------------------------------------
st.title("Runs & sweeps")
path = default_path()
slot = sweep_slot()
if slot.job is not None and slot.job.finished and not slot.job.announced:
    slot.job.announced = True
    if slot.job.result is not None:
        st.session_state["sw_sel"] = slot.job.sweep_id   # show the new sweep
for key, show in (("rs_flash", st.success), ("rs_flash_error", st.error)):
    if key in st.session_state:
        show(st.session_state.pop(key))
try:
    store = R.open_store(path)
    summaries = store.list() if store is not None else []
    sweeps = store.sweeps() if store is not None else []
except StoreError as e:
    damaged_store_ui(path, e)
    st.stop()
st.caption(f"Store `{path}` · {len(summaries)} run(s) · {len(sweeps)} sweep(s)")
frame = R.runs_frame(summaries)
labels = {i: R.run_label(n, i) for i, n in zip(frame["id"], frame["name"])}
# a link's selection (a run id names it too) wins over the last visit's: "Show in Runs &
# sweeps" after a save, or `train --save`'s link
linked_runs, unknown_runs = widgets.url_choices(
    "rs_sel", lambda raw: R.resolve_run(raw, labels), labels.__getitem__)

try:
    # open where a link sets launch settings (an invalid one's error would be hidden)
    linked = any(k in st.query_params for k in LAUNCH_KEYS)
    # open on an empty store, but closed for a link to a selection (the selected runs below
    # are what it shows); decided as the page is entered: Streamlit applies a changed
    # `expanded`, so deciding on each run closed it when the visitor chose a run
    if widgets.entering_page() or "_rs_launcher_open" not in st.session_state:
        st.session_state["_rs_launcher_open"] = not sweeps and not linked_runs
    opened = st.session_state["_rs_launcher_open"] or slot.job is not None or linked
    with st.expander("Launch a sweep", expanded=opened):
        spec, launch = launcher_ui()
        widgets.report_ignored_url_params()
        if launch and spec is not None:
            job = R.SweepJob(spec, path)
            if job.start():
                slot.job = job
                st.rerun()       # draw the launcher disabled and the progress fragment
            else:
                st.warning("The server is already training its maximum number of sweeps; "
                           "try again when one finishes.")

        @st.fragment(run_every=1.0 if slot.job is not None and slot.job.running else None)
        def sweep_progress():
            job = slot.job
            if job is None:
                return
            if job.running:
                st.progress(job.fraction(), text=progress_text(job))
                st.button("Stop", key="sw_stop", on_click=job.stop, disabled=job.stopping,
                          icon=":material/stop:")
            elif not job.announced:
                st.rerun(scope="app")    # refresh the tables with the new runs
            else:
                job_summary(job)

        sweep_progress()

    st.subheader("Sweeps")
    if sweeps:
        sweeps_ui(store, sweeps)
    else:
        st.info("No sweep yet: launch one above, or run `python -m core sweep …` with "
                f"`--store {path}`.")

    st.subheader("Runs")
    c = st.columns([3, 3, 2])
    tags = c[0].multiselect("Tags (all of)", R.all_tags(summaries), key="rs_tags",
                            bind="query-params")
    name = c[1].text_input("Name, tag or id contains", "", key="rs_name", bind="query-params",
                         help="Runs store no preset name: a sweep's runs are named after theirs.")
    statuses = c[2].multiselect("Status", list(STATUSES), key="rs_status", bind="query-params")
    shown = R.filter_runs(frame, tags, name, statuses)
    st.dataframe(shown, hide_index=True, width="stretch", key="rs_table", placeholder="—")
    if unknown_runs:        # the others were selected: the control reads them, not the URL
        st.info(f"{len(unknown_runs)} run(s) the link names are not in the store (deleted by "
                "another visitor or the command line, or a wrong id): "
                + ", ".join("`{}`".format(r.replace("`", "'")) for r in unknown_runs),
                icon=":material/info:")
    chosen = [i for i in st.session_state.get("rs_sel", []) if i in set(frame["id"])]
    if "rs_sel" in st.session_state and chosen != st.session_state["rs_sel"]:
        n = len(st.session_state["rs_sel"]) - len(chosen)
        st.session_state["rs_sel"] = chosen      # runs deleted meanwhile
        st.info(f"{n} selected run(s) no longer exist: deleted by another visitor or the "
                "command line.", icon=":material/info:")
    options = list(dict.fromkeys([*shown["id"], *chosen]))   # the filters hide no chosen run
    selected = st.multiselect("Selected runs", options, key="rs_sel", bind="query-params",
                              format_func=labels.__getitem__,
                              placeholder="Choose runs to overlay, open, export or delete")
    # the sweep view's, the filters' and the selection's URL values (the launcher's are
    # named above): Streamlit dropped a refused one silently
    widgets.report_ignored_url_params()
    with st.container(horizontal=True):
        st.download_button("Table CSV", shown.to_csv(index=False), "runs.csv", "text/csv",
                           key="rs_csv", on_click="ignore", icon=":material/download:")
        st.download_button("Table JSON",
                           shown.to_json(orient="records", indent=1, double_precision=15),
                           "runs.json",
                           "application/json", key="rs_json", on_click="ignore",
                           icon=":material/download:")
    if selected:
        actions_ui(store, selected)
        picked = selected[:R.MAX_OVERLAY]
        if len(selected) > R.MAX_OVERLAY:
            st.caption(f"The overlay draws the first {R.MAX_OVERLAY} selected runs.")
        try:
            records = [store.get(i) for i in picked]
        except StoreError as e:
            st.error(f"Cannot read a selected run — {e}")
        else:
            for r in records:   # its configuration holds the last values only
                if text := R.settings_changes_text(r["metrics"]):
                    code = lambda t: "`" + str(t).replace("`", "'") + "`"   # (no Markdown)
                    st.caption(f"⚠️ {code(r['name'] or 'run')} · {r['id'][:8]}: settings "
                               f"changed while it trained — {code(text)}. Its configuration "
                               "shows the last values.")
            loss_fig, rec_fig = R.overlay_figures(records)
            if any(R.silent_level(r, 1) is not None for r in records):
                st.caption("Dotted: the silent student, the loss of a student that never "
                           "fires (held-out inputs), in a run's colour where only that run has "
                           "its level, red-brown where runs share one (one teacher and loss). A "
                           "spike loss not below it has learnt no more than staying quiet.")
            a, b = widgets.side_by_side(demo)
            widgets.plotly_chart(a, loss_fig, key="rs_loss")
            widgets.plotly_chart(b, rec_fig, key="rs_recovery")
            with st.container(horizontal=True):
                for label, fig in (("Loss", loss_fig), ("Recovery", rec_fig)):
                    st.download_button(f"{label} HTML", lambda fig=fig: R.figure_html(fig),
                                       f"runs-{label.lower()}.html", "text/html",
                                       key=f"rs_html_{label.lower()}", on_click="ignore",
                                       icon=":material/download:")
    elif not summaries:
        st.info("No runs yet: launch a sweep above, save a run from the Teacher–Student page, "
                "or import a bundle below.")

    if not demo:
        with st.expander("Import a run bundle"):
            import_ui()
finally:
    if store is not None:
        store.close()
