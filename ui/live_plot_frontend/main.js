// Minimal Streamlit component protocol (v1): announce readiness, then on every
// render message update the SAME Plotly element with Plotly.react.
(function () {
  "use strict";
  const el = document.getElementById("plot");
  let renders = 0;
  let lastHeight = -1;

  function send(type, extra) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, extra || {}), "*");
  }

  const CONFIG = {
    displaylogo: false,
    responsive: true,
    toImageButtonOptions: { format: "png", scale: 2 },
  };
  const LEGEND_GAP = 4.4;   // a legend moved below the plot: this many font sizes under it
                            // (the x tick labels and the axis title; ui/figures.py's LEGEND_GAP)
  let config = CONFIG;      // with the render's own (args.config: ui.figures.PLOTLY_CONFIG)
  let last = null;          // {spec, height}: the latest render, redrawn on a resize
  let placed = { key: null, below: false };

  // A horizontal legend above the plot (the figures' default, top right): in a
  // narrow frame (a phone) it wraps and runs into the title.  It is drawn there
  // first; where it overlaps the title or leaves the frame it moves below the
  // plot, and stays there while the frame's width, title and legend entries
  // are unchanged (one measured redraw per width, not one per tick).
  function legendAbove(layout) {
    const legend = layout.legend || {};
    return layout.showlegend !== false && legend.orientation === "h" &&
      Number(legend.y) >= 1 && (legend.yref || "paper") === "paper";
  }

  function legendBelow(layout, height) {
    const margin = layout.margin || {};
    const font = Number((layout.font || {}).size) || 12;
    const plot = height - (Number(margin.t) || 0) - (Number(margin.b) || 0);
    if (!(plot > 0)) return layout.legend;
    return Object.assign({}, layout.legend, {
      y: -LEGEND_GAP * font / plot, yanchor: "top", x: 0, xanchor: "left",
    });
  }

  function overlapping() {
    const legend = el.querySelector(".infolayer .legend");
    if (!legend) return false;
    const l = legend.getBoundingClientRect();
    const frame = el.getBoundingClientRect();
    if (l.top < frame.top - 1 || l.left < frame.left - 1) return true;
    const title = el.querySelector(".infolayer .gtitle");
    if (!title) return false;
    const t = title.getBoundingClientRect();
    return t.width > 0 && l.left < t.right && t.left < l.right && l.top < t.bottom && t.top < l.bottom;
  }

  function legendKey(spec, layout) {
    const title = layout.title && typeof layout.title === "object" ? layout.title.text : layout.title;
    const names = (spec.data || []).filter(function (t) { return t && t.showlegend !== false; })
      .map(function (t) { return t.name; });
    return [el.clientWidth, title, JSON.stringify(names), JSON.stringify(layout.legend)].join("|");
  }

  function draw(spec, height) {
    const layout = Object.assign({}, spec.layout || {}, { height: height, autosize: true });
    const data = spec.data || [];
    const movable = legendAbove(layout);
    const key = movable ? legendKey(spec, layout) : null;
    const known = movable && placed.key === key;
    if (known && placed.below) layout.legend = legendBelow(layout, height);
    const drawn = Plotly.react(el, data, layout, config);
    if (!movable) {
      el.dataset.legend = "fixed";
    } else if (known) {
      el.dataset.legend = placed.below ? "below" : "above";
    } else {
      placed = { key: key, below: false };     // measured once this drawing has settled
      Promise.resolve(drawn).then(function () {
        if (placed.key !== key) return;        // a newer width or legend is being placed
        if (!overlapping()) {
          el.dataset.legend = "above";
          return;
        }
        placed.below = true;
        draw(last.spec, last.height);         // the latest data (a render may have come since)
      });
    }
  }

  window.addEventListener("message", function (event) {
    const msg = event.data;
    if (!msg || msg.type !== "streamlit:render") return;
    const args = msg.args || {};
    let spec;
    try {
      spec = JSON.parse(args.spec || "{}");
    } catch (e) {
      el.textContent = "chart data could not be read";
      return;
    }
    const height = Number(args.height) || 320;
    config = Object.assign({}, CONFIG, args.config || {});
    el.style.height = height + "px";
    if (typeof Plotly === "undefined") {
      el.textContent = "Plotly.js could not be loaded; reload the page.";
      send("streamlit:setFrameHeight", { height: 40 });
      return;
    }
    last = { spec: spec, height: height };
    draw(spec, height);
    renders += 1;
    el.dataset.renders = String(renders);
    if (height !== lastHeight) {
      lastHeight = height;
      send("streamlit:setFrameHeight", { height: height });
    }
  });

  // a new width (a phone turned, a window resized): place the legend again
  let resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      if (last && typeof Plotly !== "undefined" && placed.key !== null &&
          !placed.key.startsWith(el.clientWidth + "|")) {
        draw(last.spec, last.height);
      }
    }, 150);
  });

  // Plotly.js is fetched once per page, not once per chart: one frame fetches
  // it and leaves a blob URL on the (same-origin) app page; the other frames
  // wait for that URL.  A frame whose fetching frame was removed (a page
  // switch) takes the fetch over; a frame of another origin, a failed fetch or
  // a wait beyond a minute loads the file itself.  The bundle is Plotly's
  // "cartesian" one (1.5 MB: scatter, heatmap, bar, ...; the browser evaluates
  // it in about a third of the full 4.8 MB bundle's time); the full bundle
  // (copied from the plotly package) is the fallback if it cannot be loaded.
  const BUNDLE = "./plotly-cartesian.min.js";
  const FULL = "./plotly.min.js";
  const URL_KEY = "__resonancePlotlyCartesianUrl";
  const OWNER_KEY = "__resonancePlotlyCartesianOwner";   // the window fetching it

  function inject(src, done) {
    const script = document.createElement("script");
    script.src = src;
    script.onload = done;
    script.onerror = function () {
      if (src === FULL) return done();   // the render handler says Plotly is missing
      inject(src === BUNDLE ? FULL : BUNDLE, done);
    };
    document.head.appendChild(script);
  }

  function loadPlotly(done) {
    let host = null;
    try {
      host = window.parent !== window && window.parent.document ? window.parent : null;
    } catch (e) {
      host = null;   // another origin
    }
    if (!host) return inject(BUNDLE, done);
    const start = Date.now();
    (function attempt() {
      if (host[URL_KEY]) return inject(host[URL_KEY], done);
      const owner = host[OWNER_KEY];
      if (owner && owner !== window && !owner.closed) {
        if (Date.now() - start > 60000) return inject(BUNDLE, done);
        return setTimeout(attempt, 50);
      }
      host[OWNER_KEY] = window;
      fetch(BUNDLE)
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.blob();
        })
        .then(function (blob) {
          if (!host[URL_KEY]) {
            const js = new host.Blob([blob], { type: "text/javascript;charset=utf-8" });
            host[URL_KEY] = host.URL.createObjectURL(js);
          }
          inject(host[URL_KEY], done);
        })
        .catch(function () {
          if (host[OWNER_KEY] === window) host[OWNER_KEY] = null;
          inject(BUNDLE, done);
        });
    })();
  }

  loadPlotly(function () {
    send("streamlit:componentReady", { apiVersion: 1 });
  });
})();
