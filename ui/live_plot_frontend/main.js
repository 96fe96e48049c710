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

  // Plotly.js (4.8 MB) is fetched once per page, not once per chart: one frame
  // fetches it and leaves a blob URL on the (same-origin) app page; the other
  // frames wait for that URL.  A frame whose fetching frame was removed (a page
  // switch) takes the fetch over; a frame of another origin, a failed fetch or
  // a wait beyond a minute loads ./plotly.min.js itself.
  const OWN = "./plotly.min.js";
  const URL_KEY = "__resonancePlotlyUrl";
  const OWNER_KEY = "__resonancePlotlyOwner";   // the window fetching it

  function inject(src, done) {
    const script = document.createElement("script");
    script.src = src;
    script.onload = done;
    script.onerror = function () {
      if (src !== OWN) return inject(OWN, done);
      done();   // the render handler says Plotly is missing
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
    const start = Date.now();
    (function attempt() {
      if (host[URL_KEY]) return inject(host[URL_KEY], done);
      const owner = host[OWNER_KEY];
      if (owner && owner !== window && !owner.closed) {
        if (Date.now() - start > 60000) return inject(OWN, done);
        return setTimeout(attempt, 50);
      }
      host[OWNER_KEY] = window;
      fetch(OWN)
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
          inject(OWN, done);
        });
    })();
  }

  loadPlotly(function () {
    send("streamlit:componentReady", { apiVersion: 1 });
  });
})();
