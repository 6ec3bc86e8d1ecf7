// The audience builder (campaigns/builder.py, docs/console.md): groups of
// conditions joined by AND or OR, each condition a field, an operator typed
// for that field and a value. It writes the audience's JSON into the box it
// replaces (kept, folded, as the advanced view), so the server reads one
// spec whichever way it was written. Plain JS, no build step.
(function () {
  "use strict";
  const LIST_OPS = ["in", "not_in", "all"];
  const NO_VALUE = ["exists", "not_exists"];
  const COMPARE = ["gt", "gte", "lt", "lte"];
  const NUMBER = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const key in attrs || {}) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    }
    (children || []).forEach((child) => child && node.append(child));
    return node;
  }
  function options(select, pairs, chosen) {
    pairs.forEach(function (pair) {
      const option = el("option", {value: pair[0], text: pair[1]});
      if ([].concat(chosen).includes(pair[0])) option.selected = true;
      select.append(option);
    });
    return select;
  }

  // Values typed in a box <-> JSON values --------------------------------
  function scalar(text) {
    const t = text.trim();
    if (/^".*"$/.test(t)) { try { return JSON.parse(t); } catch (e) { return t; } }
    if (t === "true") return true;
    if (t === "false") return false;
    if (t === "null") return null;
    if (NUMBER.test(t)) return Number(t);
    return t;
  }
  function shown(value) {
    if (typeof value !== "string") return JSON.stringify(value);
    return (NUMBER.test(value) || ["true", "false", "null"].includes(value)) ? JSON.stringify(value) : value;
  }
  function split(text) {
    return String(text || "").split(",").map((part) => part.trim()).filter((part) => part !== "");
  }

  // A row of the builder <-> a condition of the tree ------------------------
  function leafOf(row) {
    const leaf = {field: row.field};
    if (row.field === "attribute") leaf.key = row.key.trim();
    leaf.op = row.op;
    if (NO_VALUE.includes(row.op)) return leaf;
    const list = LIST_OPS.includes(row.op);
    if (row.field === "platform") {
      leaf.value = list ? [].concat(row.value || []) : String(row.value || "");
    } else if (row.field === "attribute") {
      if (row.op === "contains") leaf.value = row.value || "";
      else if (COMPARE.includes(row.op)) leaf.value = scalar(row.value || "");
      else leaf.value = list ? split(row.value).map(scalar) : scalar(row.value || "");
    } else {
      leaf.value = list ? split(row.value) : String(row.value || "").trim();
    }
    return leaf;
  }
  function rowOf(leaf) {
    const row = {field: leaf.field, op: leaf.op, key: leaf.key || "", value: ""};
    const value = leaf.value;
    if (leaf.field === "platform") row.value = value;
    else if (Array.isArray(value)) row.value = value.map(shown).join(", ");
    else if (value !== undefined) row.value = leaf.field === "attribute" && leaf.op !== "contains" ? shown(value) : String(value);
    return row;
  }
  const isLeaf = (node) => node && typeof node === "object" && "field" in node;
  const joinOf = (node) => ("any" in node ? "any" : "all" in node ? "all" : null);

  // The builder shows two levels: groups of conditions, joined. Anything
  // deeper (or a "not") stays as JSON.
  function stateOf(text) {
    if (!text.trim()) return {join: "all", groups: []};
    let spec;
    try { spec = JSON.parse(text); } catch (e) { return null; }
    if (!spec || typeof spec !== "object" || Object.keys(spec).some((k) => k !== "where")) return null;
    const where = spec.where;
    if (where === undefined) return {join: "all", groups: []};
    if (isLeaf(where)) return {join: "all", groups: [{join: "all", rows: [rowOf(where)]}]};
    const join = joinOf(where);
    if (!join) return null;
    const children = where[join];
    if (children.every(isLeaf)) return {join: "all", groups: [{join: join, rows: children.map(rowOf)}]};
    const groups = [];
    for (const child of children) {
      if (isLeaf(child)) { groups.push({join: "all", rows: [rowOf(child)]}); continue; }
      const inner = joinOf(child);
      if (!inner || !child[inner].every(isLeaf)) return null;
      groups.push({join: inner, rows: child[inner].map(rowOf)});
    }
    return {join: join, groups: groups};
  }
  function textOf(state) {
    const groups = state.groups.filter((g) => g.rows.length);
    if (!groups.length) return "";
    const trees = groups.map((g) => ({[g.join]: g.rows.map(leafOf)}));
    const where = trees.length === 1 ? trees[0] : {[state.join]: trees};
    return JSON.stringify({where: where});
  }

  function Builder(box) {
    const table = JSON.parse(box.dataset.builder);
    const fields = table.fields;
    const root = el("div", {class: "kpns-builder", id: "kpns-builder"});
    const note = el("p", {class: "help kpns-builder-note", hidden: ""});
    const advanced = el("details", {class: "kpns-builder-json"}, [el("summary", {text: "Advanced: the audience as JSON"})]);
    // One block where the box was: the builder, a note, the JSON folded.
    const wrap = el("div", {class: "kpns-builder-wrap"}, [root, note]);
    box.parentNode.insertBefore(wrap, box);
    wrap.append(advanced);
    advanced.append(box);
    let state = stateOf(box.value) || null;

    function sync() {
      box.value = textOf(state);
      box.dataset.synced = box.value;
      // The composer's live count and kind switch listen to the form.
      box.dispatchEvent(new Event("input", {bubbles: true}));
    }
    function newRow(field) {
      const first = fields[field].ops[0][0];
      return {field: field, op: first, key: "", value: field === "platform" ? table.platforms[0][0] : ""};
    }
    function valueControl(row, id, onChange) {
      if (NO_VALUE.includes(row.op)) return null;
      const list = LIST_OPS.includes(row.op);
      if (row.field === "platform") {
        const select = el("select", {id: id, class: "kpns-value"});
        if (list) { select.multiple = true; select.size = 3; }
        options(select, table.platforms, row.value);
        select.addEventListener("change", function () {
          row.value = list ? Array.from(select.selectedOptions, (o) => o.value) : select.value;
          onChange();
        });
        return select;
      }
      const hints = {tag: "vip", locale: "fr, en-US", app_version: "1.10", alias: "user-42"};
      let hint = hints[row.field] || "";
      if (row.field === "attribute") hint = COMPARE.includes(row.op) ? "a number" : row.op === "contains" ? "text" : "pro, 42, true";
      if (list) hint = "comma-separated: " + hint;
      const input = el("input", {id: id, class: "kpns-value", type: "text", placeholder: hint});
      input.value = row.value || "";
      input.addEventListener("input", function () { row.value = input.value; onChange(); });
      return input;
    }
    function rowView(group, row, g, r) {
      const base = "kpns-g" + g + "-r" + r;
      const field = options(el("select", {id: base + "-field", class: "kpns-field", "aria-label": "Field"}),
        Object.keys(fields).map((name) => [name, fields[name].label]), row.field);
      field.addEventListener("change", function () {
        Object.assign(row, newRow(field.value));
        render(); sync();
      });
      const pairs = fields[row.field].ops;
      const op = options(el("select", {id: base + "-op", class: "kpns-op", "aria-label": "Operator"}), pairs, row.op);
      op.addEventListener("change", function () {
        const wasList = LIST_OPS.includes(row.op);
        row.op = op.value;
        if (row.field === "platform" && wasList !== LIST_OPS.includes(row.op)) {
          row.value = LIST_OPS.includes(row.op) ? [].concat(row.value || []) : [].concat(row.value || [])[0] || "";
        }
        render(); sync();
      });
      let key = null;
      if (row.field === "attribute") {
        key = el("input", {id: base + "-key", class: "kpns-key", type: "text", placeholder: "key", "aria-label": "Attribute key", size: 10});
        key.value = row.key;
        key.addEventListener("input", function () { row.key = key.value; sync(); });
      }
      const value = valueControl(row, base + "-value", sync);
      const remove = el("button", {type: "button", class: "kpns-remove", title: "Remove this condition", text: "×", id: base + "-remove"});
      remove.addEventListener("click", function () {
        group.rows.splice(r, 1);
        if (!group.rows.length) state.groups.splice(g, 1);
        render(); sync();
      });
      return el("div", {class: "kpns-row"}, [field, key, op, value, remove]);
    }
    function joinSelect(id, chosen, words, onChange) {
      const select = options(el("select", {id: id, class: "kpns-join"}), [["all", words[0]], ["any", words[1]]], chosen);
      select.addEventListener("change", function () { onChange(select.value); render(); sync(); });
      return select;
    }
    function render() {
      root.replaceChildren();
      if (state === null) {
        note.hidden = false;
        note.textContent = "This audience is more than groups of conditions: edit it as JSON below.";
        advanced.open = true;
        return;
      }
      note.hidden = true;
      state.groups.forEach(function (group, g) {
        if (g > 0) {
          root.append(el("div", {class: "kpns-between"}, [
            joinSelect("kpns-join-groups-" + g, state.join, ["AND", "OR"], (v) => { state.join = v; }),
          ]));
        }
        const head = el("div", {class: "kpns-group-head"}, [
          document.createTextNode("Devices matching "),
          joinSelect("kpns-g" + g + "-join", group.join, ["all", "any"], (v) => { group.join = v; }),
          document.createTextNode(" of these conditions"),
        ]);
        const add = el("button", {type: "button", class: "kpns-add-row", id: "kpns-g" + g + "-add", text: "+ Condition"});
        add.addEventListener("click", function () { group.rows.push(newRow("tag")); render(); sync(); });
        const rows = group.rows.map((row, r) => rowView(group, row, g, r));
        root.append(el("div", {class: "kpns-group", "data-group": String(g)}, [head, ...rows, add]));
      });
      const addGroup = el("button", {type: "button", class: "kpns-add-group", id: "kpns-add-group",
        text: state.groups.length ? "+ Group" : "+ Add a condition"});
      addGroup.addEventListener("click", function () {
        state.groups.push({join: "all", rows: [newRow("tag")]});
        render(); sync();
      });
      root.append(addGroup);
    }
    // Edited as JSON: shown again in the builder when it can be.
    box.addEventListener("input", function () {
      if (box.value === box.dataset.synced) return;
      state = stateOf(box.value);
      render();
    });
    render();
  }

  // Live count on a segment's page (the composer's own script counts for a
  // campaign): the same estimate endpoint, as a filter.
  function segmentCount(form) {
    const card = document.getElementById("kpns-audience-live");
    if (!card || !form.elements["audience_json"]) return;
    let timer = null, asked = 0;
    function update() {
      const ticket = ++asked;
      const params = new URLSearchParams({audience_kind: "filter"});
      const app = form.elements["app"];
      params.set("app", app ? app.value : card.dataset.app || "");
      params.set("audience_json", form.elements["audience_json"].value);
      fetch(card.dataset.url + "?" + params, {credentials: "same-origin"}).then((r) => r.json()).then(function (data) {
        if (ticket !== asked) return;
        const error = document.getElementById("est-error");
        error.hidden = !data.error;
        error.textContent = data.error || "";
        document.getElementById("est-matching").textContent = data.error ? "…" : data.matching;
        document.getElementById("est-online").textContent = data.error ? "…" : data.online;
        card.dataset.ready = String(ticket);
      });
    }
    const soon = () => { clearTimeout(timer); timer = setTimeout(update, 250); };
    form.addEventListener("input", soon);
    form.addEventListener("change", soon);
    update();
  }

  // A campaign's segment picker offers the chosen app's segments only.
  function segmentsOfApp(form) {
    const app = form.elements["app"], picker = form.elements["segment"];
    if (!app || !picker || picker.tagName !== "SELECT") return;
    function filter() {
      Array.from(picker.options).forEach(function (option) {
        const other = option.dataset.app && option.dataset.app !== app.value;
        option.hidden = Boolean(other);
        if (other && option.selected) picker.value = "";
      });
    }
    app.addEventListener("change", filter);
    filter();
  }

  // The segment list: each row's count, asked for after the page shows.
  function listCounts() {
    const cells = Array.from(document.querySelectorAll(".kpns-segment-count"));
    (function next() {
      const cell = cells.shift();
      if (!cell) return;
      fetch(cell.dataset.url, {credentials: "same-origin"}).then((r) => r.json()).then(function (data) {
        cell.textContent = data.error ? data.error : data.matching + " / " + data.online;
        next();
      }).catch(next);
    })();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea.kpns-audience-json").forEach(Builder);
    const segmentForm = document.getElementById("segment_form");
    if (segmentForm) segmentCount(segmentForm);
    const campaignForm = document.getElementById("campaign_form");
    if (campaignForm) segmentsOfApp(campaignForm);
    listCounts();
  });
})();
