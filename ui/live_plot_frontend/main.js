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

  send("streamlit:componentReady", { apiVersion: 1 });
})();
