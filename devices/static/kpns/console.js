// The marketer's console (campaign change form): live audience count,
// notification preview, results refresh. Plain JS, no build step.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const CONDITIONS = ["tags_any", "tags_all", "tags_none", "locales", "app_versions",
                      "aliases", "attributes", "device_ids", "audience_json", "segment"];

  // Live audience count -------------------------------------------------
  function audienceQuery(form) {
    const params = new URLSearchParams();
    for (const name of ["app", "audience_kind", "send_at_0", "send_at_1", ...CONDITIONS]) {
      const field = form.elements[name];
      if (field && field.value) params.set(name, field.value);
    }
    form.querySelectorAll('input[name="platforms"]:checked')
      .forEach((box) => params.append("platforms", box.value));
    const local = form.elements["local_time"];
    if (local && local.checked) params.set("local_time", "1");
    return params;
  }
  function showEveryoneRow(form) {
    const kind = form.elements["audience_kind"];
    const row = document.querySelector(".field-confirm_everyone");
    if (kind && row) row.hidden = kind.value !== "all";
  }
  function startEstimate(form) {
    const box = $("kpns-audience-live");
    if (!box || !form.elements["audience_kind"]) return;
    let timer = null;
    let asked = 0;
    function update() {
      const ticket = ++asked;
      fetch(box.dataset.url + "?" + audienceQuery(form), {credentials: "same-origin"})
        .then((r) => r.json()).then(function (data) {
          if (ticket !== asked) return;  // a newer question is on its way
          const error = $("est-error");
          error.hidden = !data.error;
          error.textContent = data.error || "";
          if (!data.error) {
            $("est-matching").textContent = data.matching;
            $("est-online").textContent = data.online;
          }
          const everyone = $("est-everyone");
          everyone.hidden = !data.everyone;
          everyone.textContent = data.everyone
            ? "Everyone: all " + data.total + " devices of the app. You will be asked to confirm." : "";
          const note = $("local-note");
          note.hidden = !data.local_note;
          note.textContent = data.local_note || "";
          box.dataset.ready = String(ticket);
        });
    }
    function soon() { clearTimeout(timer); timer = setTimeout(update, 250); }
    form.addEventListener("input", function (event) {
      const kind = form.elements["audience_kind"];
      // A condition typed under "All devices" means a filter was meant.
      if (CONDITIONS.includes(event.target.name) && event.target.value && kind.value === "all") {
        kind.value = "filter";
        showEveryoneRow(form);
      }
      soon();
    });
    form.addEventListener("change", function () { showEveryoneRow(form); soon(); });
    showEveryoneRow(form);
    update();
  }

  // Preview ---------------------------------------------------------------
  function startPreview(form) {
    const panel = $("kpns-preview");
    if (!panel) return;
    const value = function (name) {
      // The variant and language chosen above the preview (variants.js).
      if (form && window.kpnsContent) return window.kpnsContent(form)[name] || "";
      return (form && form.elements[name]) ? form.elements[name].value : (panel.dataset[name] || "");
    };
    function render() {
      $("preview-title").textContent = value("title") || "Title";
      $("preview-body").textContent = value("body");
      $("preview-url").textContent = value("url") ? new URL(value("url"), location.href).host : "";
      const image = $("preview-image");
      const src = value("image");
      image.hidden = !src;
      if (src) image.src = src; else image.removeAttribute("src");
      const list = $("preview-data");
      list.replaceChildren();
      let data = {};
      try { data = JSON.parse(value("data") || "{}") || {}; } catch (e) { data = {}; }
      Object.keys(data).slice(0, 3).forEach(function (key) {
        const term = document.createElement("dt");
        term.textContent = key;
        const def = document.createElement("dd");
        def.textContent = typeof data[key] === "string" ? data[key] : JSON.stringify(data[key]);
        list.append(term, def);
      });
    }
    panel.querySelectorAll("[data-platform]").forEach(function (tab) {
      if (tab.tagName !== "BUTTON") return;
      tab.addEventListener("click", function () {
        panel.querySelectorAll("button[data-platform]").forEach((b) => b.classList.toggle("active", b === tab));
        $("preview-mock").dataset.platform = tab.dataset.platform;
      });
    });
    if (form) form.addEventListener("input", render);
    render();
  }

  // Results of a campaign that was sent -------------------------------------
  const svgNS = "http://www.w3.org/2000/svg";
  function el(name, attrs, text) {
    const node = document.createElementNS(svgNS, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function funnel(stats) {
    const svg = $("funnel");
    svg.replaceChildren();
    const max = Math.max(1, stats.targeted);
    ["targeted", "sent", "delivered", "opened"].forEach(function (name, i) {
      const width = Math.round(330 * stats[name] / max);
      svg.appendChild(el("rect", {x: 90, y: i * 30 + 5, width: width, height: 22, rx: 3, fill: "#3b5bdb"}));
      svg.appendChild(el("text", {x: 0, y: i * 30 + 21}, name));
      svg.appendChild(el("text", {x: 95 + width, y: i * 30 + 21}, String(stats[name])));
    });
  }
  function timeline(points) {
    const svg = $("timeline");
    svg.replaceChildren();
    if (!points.length) return;
    const max = Math.max(1, ...points.map((p) => Math.max(p.sent, p.delivered)));
    const step = 600 / points.length;
    points.forEach(function (p, i) {
      const h = Math.round(130 * p.delivered / max);
      svg.appendChild(el("rect", {x: 30 + i * step, y: 140 - h, width: Math.max(1, step - 1), height: h, fill: "#748ffc"}));
    });
    const local = (t) => new Date(t).toLocaleTimeString();
    svg.appendChild(el("text", {x: 30, y: 155}, local(points[0].t)));
    svg.appendChild(el("text", {x: 540, y: 155}, local(points[points.length - 1].t)));
    svg.appendChild(el("text", {x: 0, y: 12}, String(max)));
  }
  function startStats() {
    const source = $("kpns-stats");
    if (!source) return;
    function refresh() {
      fetch(source.dataset.url, {credentials: "same-origin"}).then((r) => r.json()).then(function (data) {
        for (const name in data.stats) {
          const cell = document.querySelector('[data-stat="' + name + '"]');
          if (cell) cell.textContent = data.stats[name];
        }
        for (const name in data.pacing || {}) {
          const cell = document.querySelector('[data-pacing="' + name + '"]');
          if (cell) cell.textContent = data.pacing[name];
        }
        $("campaign-status").textContent = data.status_display;
        funnel(data.stats);
        timeline(data.timeline);
        const live = data.status === "sending" || data.status === "scheduled" || data.stats.pending > 0;
        setTimeout(refresh, live ? 2000 : 15000);
      }).catch(function () { setTimeout(refresh, 5000); });
    }
    refresh();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = $("campaign_form");
    const editable = form && form.elements["title"] ? form : null;
    if (editable) startEstimate(editable);
    startPreview(editable);
    startStats();
  });
})();
