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
    const layout = Object.assign({}, spec.layout || {}, { height: height, autosize: true });
    el.style.height = height + "px";
    if (typeof Plotly === "undefined") {
      el.textContent = "Plotly.js could not be loaded; reload the page.";
      send("streamlit:setFrameHeight", { height: 40 });
      return;
    }
    Plotly.react(el, spec.data || [], layout, {
      displaylogo: false,
      responsive: true,
      toImageButtonOptions: { format: "png", scale: 2 },
    });
    renders += 1;
    el.dataset.renders = String(renders);
    if (height !== lastHeight) {
      lastHeight = height;
      send("streamlit:setFrameHeight", { height: height });
    }
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
