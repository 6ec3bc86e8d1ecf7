// The composer's "Frequency cap and quiet hours" box: the rule in words for
// the chosen app and the settings being typed (the admin's pacing.json, in
// the marketer's zone), and a cap's or a window's own fields shown only
// when "of its own" is chosen. Plain JS, no build step.
(function () {
  "use strict";
  const NAMES = ["app", "frequency_cap_mode", "frequency_cap_count",
                 "frequency_cap_window_seconds", "quiet_hours_mode",
                 "quiet_hours_start", "quiet_hours_end", "quiet_hours_action"];

  function value(form, name) {
    const field = form.elements[name];
    return field ? field.value : "";  // a radio group's value is the checked one
  }
  function showRows(names, shown) {
    for (const name of names) {
      const row = document.querySelector(".field-" + name);
      if (row) row.hidden = !shown;
    }
  }
  function showOwnFields(form) {
    showRows(["frequency_cap_count", "frequency_cap_window_seconds"],
             value(form, "frequency_cap_mode") === "custom");
    showRows(["quiet_hours_start", "quiet_hours_end"],
             value(form, "quiet_hours_mode") === "custom");
    showRows(["quiet_hours_action"], value(form, "quiet_hours_mode") !== "off");
  }
  function start() {
    const source = document.getElementById("kpns-pacing-source");
    const box = document.querySelector("fieldset.kpns-pacing-box");
    const form = box && box.closest("form");
    // A read-only campaign has no fields to follow: its words stay.
    if (!source || !form || !form.elements["frequency_cap_mode"]) return;
    const note = box.querySelector(".description");
    let timer = null;
    let asked = 0;
    function update() {
      const params = new URLSearchParams();
      for (const name of NAMES) {
        const text = value(form, name);
        if (text) params.set(name, text);
      }
      const ticket = ++asked;
      fetch(source.dataset.url + "?" + params, {credentials: "same-origin"})
        .then((r) => r.json()).then(function (data) {
          if (ticket !== asked || !note) return;  // a newer question is on its way
          note.textContent = data.note + (data.campaign ? " " + data.campaign : "");
          box.dataset.ready = String(ticket);
        });
    }
    function changed(event) {
      if (!NAMES.includes(event.target.name)) return;
      showOwnFields(form);
      clearTimeout(timer);
      timer = setTimeout(update, 250);
    }
    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    showOwnFields(form);
    update();
  }
  document.addEventListener("DOMContentLoaded", start);
})();
