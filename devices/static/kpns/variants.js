// A/B variants and language versions in the composer (campaigns/variant_forms.py):
// add and remove sub-form rows, and give the preview the content of the
// variant and language chosen above it (kpnsContent, read by console.js and
// personalize.js). Plain JS, no build step.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const FIELDS = ["title", "body", "url", "image", "data"];

  function rows(kind) {
    return Array.from(document.querySelectorAll(".kpns-" + kind + "-row"))
      .filter((row) => !row.querySelector('input[name$="-DELETE"]')?.checked);
  }
  function cell(row, name) {
    const field = row.querySelector('[name$="-' + name + '"]');
    return field ? field.value : "";
  }

  // The content the preview shows: variant A is the form's own fields; a
  // language version's filled fields replace the variant's.
  window.kpnsContent = function (form) {
    const variant = $("preview-variant") ? $("preview-variant").value : "A";
    const language = $("preview-language") ? $("preview-language").value : "";
    const content = {};
    for (const name of FIELDS) content[name] = form.elements[name] ? form.elements[name].value : "";
    if (variant !== "A") {
      const row = rows("variant").find((r) => cell(r, "key") === variant);
      if (row) for (const name of FIELDS) content[name] = cell(row, name);
    }
    if (language) {
      const row = rows("language").find((r) => cell(r, "variant") === variant
        && cell(r, "locale").trim().toLowerCase() === language);
      if (row) for (const name of ["title", "body", "url", "image"]) {
        if (cell(row, name)) content[name] = cell(row, name);
      }
    }
    return content;
  };

  function fillChoices() {
    const variantBox = $("preview-variant");
    const languageBox = $("preview-language");
    if (!variantBox) return;
    const keep = variantBox.value || "A";
    const keys = ["A", ...rows("variant").map((r) => cell(r, "key")).filter(Boolean)];
    variantBox.replaceChildren(...keys.map((k) => new Option("Variant " + k, k)));
    variantBox.value = keys.includes(keep) ? keep : "A";
    const keepLanguage = languageBox.value;
    const locales = rows("language").filter((r) => cell(r, "variant") === variantBox.value)
      .map((r) => cell(r, "locale").trim().toLowerCase()).filter(Boolean);
    languageBox.replaceChildren(new Option("default (fallback)", ""),
      ...Array.from(new Set(locales)).map((l) => new Option(l, l)));
    languageBox.value = locales.includes(keepLanguage) ? keepLanguage : "";
  }

  function addRow(kind, prefix) {
    const total = document.querySelector('input[name="' + prefix + '-TOTAL_FORMS"]');
    const index = Number(total.value);
    const html = $(kind + "-empty").innerHTML.replaceAll("__prefix__", String(index));
    $(kind + "-rows").insertAdjacentHTML("beforeend", html);
    total.value = String(index + 1);
    const row = $(kind + "-rows").lastElementChild;
    if (kind === "variant") {
      const used = rows("variant").map((r) => cell(r, "key"));
      const free = ["B", "C", "D", "E"].find((k) => !used.slice(0, -1).includes(k));
      if (free) row.querySelector('[name$="-key"]').value = free;
    } else {
      const chosen = $("preview-variant") ? $("preview-variant").value : "A";
      row.querySelector('[name$="-variant"]').value = chosen;
    }
    fillChoices();
    row.querySelector("input[type=text], input:not([type]), textarea")?.focus();
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.querySelector("#campaign_form");
    if (!form) return;
    $("add-variant")?.addEventListener("click", () => addRow("variant", "variants"));
    $("add-language")?.addEventListener("click", () => addRow("language", "languages"));
    form.addEventListener("change", function (event) {
      const remove = event.target.name && event.target.name.endsWith("-DELETE");
      if (remove) event.target.closest(".kpns-vrow").classList.toggle("kpns-vremoved", event.target.checked);
      if (event.target.closest(".kpns-variants") || remove) fillChoices();
    });
    form.addEventListener("input", function (event) {
      if (event.target.closest(".kpns-variants")) fillChoices();
    });
    for (const id of ["preview-variant", "preview-language"]) {
      $(id)?.addEventListener("change", function (event) {
        event.stopPropagation();
        if (id === "preview-variant") fillChoices();
        // The previews listen to the form's input events.
        form.dispatchEvent(new Event("input", {bubbles: true}));
      });
    }
    fillChoices();
  });
})();
