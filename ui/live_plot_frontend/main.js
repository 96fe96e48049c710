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

  // Plotly.js (4.8 MB) is fetched once per page, not once per chart: the first
  // frame fetches it and leaves a blob URL on the (same-origin) app page; the
  // other frames load that URL.  A frame of another origin, a failed fetch or a
  // wait beyond 15 s falls back to loading ./plotly.min.js itself.
  const OWN = "./plotly.min.js";
  const URL_KEY = "__resonancePlotlyUrl";
  const BUSY_KEY = "__resonancePlotlyBusy";

  function inject(src, done) {
    const script = document.createElement("script");
    script.src = src;
    script.onload = done;
    script.onerror = function () {
      if (src !== OWN) inject(OWN, done);
      else el.textContent = "Plotly.js could not be loaded";
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
    if (!host) return inject(OWN, done);
    if (host[URL_KEY]) return inject(host[URL_KEY], done);
    if (!host[BUSY_KEY]) {
      host[BUSY_KEY] = true;
      fetch(OWN)
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.text();
        })
        .then(function (text) {
          const blob = new host.Blob([text], { type: "text/javascript" });
          host[URL_KEY] = host.URL.createObjectURL(blob);
          inject(host[URL_KEY], done);
        })
        .catch(function () {
          host[BUSY_KEY] = false;
          inject(OWN, done);
        });
      return;
    }
    const start = Date.now();
    (function wait() {
      if (host[URL_KEY]) return inject(host[URL_KEY], done);
      if (!host[BUSY_KEY] || Date.now() - start > 15000) return inject(OWN, done);
      setTimeout(wait, 50);
    })();
  }

  loadPlotly(function () {
    send("streamlit:componentReady", { apiVersion: 1 });
  });
})();
