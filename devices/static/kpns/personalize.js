// The personalised preview (campaign and template pages): the content on
// the screen rendered by the server for a sample device, as it will be
// sent (campaigns/personalize.py). Plain JS, no build step.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const CONTENT = ["app", "title", "body", "url", "image", "data"];
  const AUDIENCE = ["audience_kind", "tags_any", "tags_all", "tags_none", "locales",
                    "app_versions", "aliases", "attributes", "device_ids",
                    "audience_json", "segment"];

  function start(form, sample) {
    let pinned = "";   // the random device shown, kept while typing
    let after = "";    // "Another": the next device after this one
    let asked = 0;
    let timer = null;

    function query() {
      const params = new URLSearchParams();
      for (const name of [...CONTENT, ...AUDIENCE]) {
        const field = form.elements[name];
        if (field && field.value) params.set(name, field.value);
      }
      // The variant and language chosen above the preview (variants.js).
      if (window.kpnsContent) {
        const chosen = window.kpnsContent(form);
        for (const name of ["title", "body", "url", "image", "data"]) {
          if (chosen[name]) params.set(name, chosen[name]); else params.delete(name);
        }
      }
      // The variant and language chosen above the preview (variants.js).
      if (window.kpnsContent) {
        const content = window.kpnsContent(form);
        for (const name of ["title", "body", "url", "image", "data"]) {
          if (content[name]) params.set(name, content[name]); else params.delete(name);
        }
      }
      form.querySelectorAll('input[name="platforms"]:checked')
        .forEach((box) => params.append("platforms", box.value));
      const typed = $("preview-device").value.trim();
      if (typed) params.set("device", typed);
      else if (pinned) params.set("device", pinned);
      else if (after) params.set("after", after);
      return params;
    }

    function show(content) {
      const app = form.elements["app"];
      const name = panelName();
      if (app && app.selectedIndex > 0 && name) name.textContent = app.options[app.selectedIndex].text;
      $("preview-title").textContent = content.title || "Title";
      $("preview-body").textContent = content.body || "";
      const list = $("preview-data");
      list.replaceChildren();
      const data = content.data || {};
      Object.keys(data).slice(0, 3).forEach(function (key) {
        const term = document.createElement("dt");
        term.textContent = key;
        const def = document.createElement("dd");
        def.textContent = typeof data[key] === "string" ? data[key] : JSON.stringify(data[key]);
        list.append(term, def);
      });
      const url = $("preview-url");
      try { url.textContent = content.url ? new URL(content.url, location.href).host : ""; }
      catch (e) { url.textContent = ""; }
      const image = $("preview-image");
      image.hidden = !content.image;
      if (content.image) image.src = content.image; else image.removeAttribute("src");
    }

    function panelName() { return document.querySelector("#kpns-preview .kpns-app-name"); }

    function update() {
      const ticket = ++asked;
      fetch(sample.dataset.url + "?" + query(), {credentials: "same-origin"})
        .then((r) => r.json()).then(function (answer) {
          if (ticket !== asked) return;  // a newer question is on its way
          const errors = $("preview-errors");
          const problems = Object.entries(answer.errors || {})
            .map(([field, list]) => field + ": " + list.join(" "));
          errors.hidden = !problems.length;
          errors.textContent = problems.join("\n");
          if (answer.content) {
            show(answer.content);
            const device = answer.device;
            if (device && !$("preview-device").value.trim()) pinned = device.id;
            $("preview-sample-note").textContent = device
              ? "As sent to " + device.label + " (" + [device.platform, device.locale].filter(Boolean).join(", ") + ")"
              : (answer.note || "");
            $("preview-size").textContent = answer.bytes + " of " + answer.limit + " bytes";
          }
          sample.dataset.ready = String(ticket);
        }).catch(function () { /* the next edit asks again */ });
    }
    function soon() { clearTimeout(timer); timer = setTimeout(update, 300); }

    form.addEventListener("input", function (event) {
      const name = event.target.name;
      if (name === "app" || AUDIENCE.includes(name) || name === "platforms") pinned = "";
      // After console.js's own (raw) render of the same input.
      soon();
    });
    form.addEventListener("change", function (event) {
      if (event.target.name === "app" || event.target.name === "platforms") pinned = "";
      soon();
    });
    $("preview-device").addEventListener("input", function () { pinned = ""; after = ""; soon(); });
    $("preview-another").addEventListener("click", function () {
      $("preview-device").value = "";
      after = pinned;
      pinned = "";
      update();
    });
    update();
  }

  function startPicker() {
    const pick = $("kpns-template-pick");
    if (!pick) return;
    pick.addEventListener("change", function () {
      location.href = pick.dataset.url + (pick.value ? "?template=" + encodeURIComponent(pick.value) : "");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    startPicker();
    const sample = $("kpns-sample");
    const form = document.querySelector("#campaign_form, #messagetemplate_form");
    if (sample && form && form.elements["title"]) start(form, sample);
  });
})();
